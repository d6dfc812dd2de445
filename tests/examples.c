// SPDX-License-Identifier: GPL-2.0
/*
 * The examples shipped with libuffdx must work: examples/handler.c is
 * compiled into this program with its main() renamed (see the Makefile)
 * and run on a file whose contents the test knows, then on the default
 * input (the program itself), through the pages past the file's end.
 */
#include "helpers.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kselftest_harness.h"

int uffdx_example_handler_main(int argc, char **argv);

FIXTURE(example) {
	char path[64];
};

FIXTURE_SETUP(example)
{
	SKIP_IF_NO_UFFDX();
	strcpy(self->path, "/tmp/uffdx-example-XXXXXX");
}

FIXTURE_TEARDOWN(example)
{
	unlink(self->path);
}

/* A 5.5-page file: whole pages, a partial page, then zero-filled pages. */
TEST_F_TIMEOUT(example, handler_serves_a_file, 120)
{
	char *argv[] = { "handler", self->path, "8", NULL };
	size_t len = 5 * ps + ps / 2;
	uint8_t *data = malloc(len);
	int fd = mkstemp(self->path);

	ASSERT_LE(0, fd);
	ASSERT_NE(NULL, data);
	fill_pattern(data, len, 99);
	ASSERT_EQ((ssize_t)len, write(fd, data, len));
	close(fd);
	free(data);
	EXPECT_EQ(0, uffdx_example_handler_main(3, argv));
}

TEST_F_TIMEOUT(example, handler_serves_its_own_binary, 120)
{
	char *argv[] = { "handler", NULL };

	EXPECT_EQ(0, uffdx_example_handler_main(1, argv));
}

TEST_HARNESS_MAIN
