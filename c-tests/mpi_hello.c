/* Two-rank MPI hello world for tests/slurm.rs: each rank prints its rank, the size of
 * the world and the host name it sees, then rank 0 receives a number from every other
 * rank (so the ranks really talk to each other, through Open MPI's transports).
 * Exit 0 when every message arrived. */
#include <mpi.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int rank, size;
    char host[256] = "";
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    gethostname(host, sizeof host - 1);
    int bad = 0;
    if (rank == 0) {
        for (int from = 1; from < size; from++) {
            int got = -1;
            MPI_Recv(&got, 1, MPI_INT, from, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            if (got != from * 10)
                bad = 1;
            printf("rank 0 received %d from rank %d\n", got, from);
        }
    } else {
        int value = rank * 10;
        MPI_Send(&value, 1, MPI_INT, 0, 0, MPI_COMM_WORLD);
    }
    printf("rank %d of %d on %s\n", rank, size, host);
    fflush(stdout);
    MPI_Finalize();
    return bad;
}
