/* SPDX-License-Identifier: MIT */
/* Private to libuffdx: nothing here is installed. */
#ifndef LIBUFFDX_LIB_H
#define LIBUFFDX_LIB_H

#include "libuffdx.h"

/* Built with -fvisibility=hidden; the public functions are exported here
 * and again listed in libuffdx.map. */
#define UFFDX_EXPORT	__attribute__((visibility("default")))

#if !defined(LIBUFFDX_VERSION) || !defined(LIBUFFDX_VERSION_MAJOR) || \
    !defined(LIBUFFDX_VERSION_MINOR)
#error "LIBUFFDX_VERSION must be set by the Makefile (from dkms.conf)"
#endif

#endif /* LIBUFFDX_LIB_H */
