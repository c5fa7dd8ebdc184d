/*
 * graft/mpi.h: a graft_comm from an MPI communicator, for data-parallel
 * training (graft_fit_cfg.comm). Only programs that use MPI include it; the
 * library must be built with MPI (make MPI=1; graft_mpi_built()).
 */
#ifndef GRAFT_API_MPI_H
#define GRAFT_API_MPI_H

#include <mpi.h>

#include "graft/train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Duplicates comm (graft's messages never mix with the caller's). MPI must
 * be initialised; free the result before MPI_Finalize. Collective, both:
 * every rank of comm calls them (graft_comm_free also frees the shared
 * window that GRAFT_ALLREDUCE_SHARED fits keep from one fit to the next). */
graft_status graft_comm_from_mpi(MPI_Comm comm, graft_comm **out);
void graft_comm_free(graft_comm *c);

#ifdef __cplusplus
}
#endif
#endif /* GRAFT_API_MPI_H */
