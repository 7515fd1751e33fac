/*
 * OpenMP helpers. The header <omp.h> is used only when the build found
 * OpenMP. Without it, every query returns what a single-threaded runtime would.
 */
#ifdef __linux__
#define _GNU_SOURCE /* sched_getcpu, CPU_SET and pthread_setaffinity_np */
#endif

#include "nnfast.h"

#ifdef _OPENMP
#include <omp.h>
#endif

int nnf_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int nnf_omp_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int nnf_omp_num_procs(void)
{
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    return 1;
#endif
}

int nnf_effective_threads(int requested)
{
    int limit = nnf_omp_max_threads();
    int n = requested < limit ? requested : limit;
    return n > 0 ? n : 1;
}

int nnf_observed_team_size(int n_threads)
{
    int size = 1;
#ifdef _OPENMP
    #pragma omp parallel num_threads(n_threads)
    {
        #pragma omp single
        size = omp_get_num_threads();
    }
#else
    (void)n_threads;
#endif
    return size;
}

/*
 * Thread counts under shared CPUs.
 *
 * Every OS thread that opens a parallel region owns its own OpenMP team, and
 * the team's workers outlive the region. When the workers of all teams, plus
 * one, outnumber the CPUs, libgomp stops spinning at barriers and puts waiting
 * threads to sleep, so each barrier costs a wake-up of tens of microseconds.
 * This happens as soon as two Python threads each run a 2-thread kernel on a
 * 2-CPU machine. nnfast counts the workers of the teams that live threads
 * have opened, and while a new team would oversubscribe the CPUs it raises
 * every "too small to split" limit by NNF_SHARED_CPU_WORK_SCALE.
 *
 * Measured on the project's 2-vCPU Zen 4 VM (benchmarks/threads.py, part c):
 * with a second team alive, the 784 -> 128 Dense forward and backward pass
 * ran 2.4x slower on 2 threads than on 1 at batch 32 (6.4 MFLOP per GEMM),
 * 1.08x slower at batch 128 (26 MFLOP) and 1.2x faster at batch 256
 * (51 MFLOP), where without the second team 2 threads already paid off from
 * batch 16. The GEMM's limit, 0.2 MFLOP, times 100 is 40 MFLOP of float32.
 * NOTE: the same factor is applied to the element loops of the other kernels
 * without its own measurement.
 */
#define NNF_SHARED_CPU_WORK_SCALE 100.0

/*
 * Worker binding on Linux.
 *
 * A worker thread woken from sleep may wait milliseconds before it runs.
 * On the project's 2-vCPU VM, a loop of two-thread OpenMP regions after
 * 300 ms pauses lost 3 to 8 ms at the start of most batches. With the
 * worker bound to a CPU, no region after the first batch took more than
 * 0.1 ms. So when a thread's team grows and the teams of live threads fit
 * on the CPUs, nnfast binds each new worker to its own CPU: the CPUs the
 * calling thread may use, in order, starting after the one it runs on. The
 * calling thread itself stays free, so threads it starts later keep its
 * CPU mask.
 * NNFAST_PIN_THREADS=0 turns this off, and so does any OpenMP binding
 * setting (OMP_PROC_BIND, OMP_PLACES, GOMP_CPU_AFFINITY).
 */
#if defined(_OPENMP) && !defined(_WIN32)

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __linux__
#include <sched.h>
#endif

/* Workers (team size minus one) of the teams opened by live threads. */
static atomic_long team_workers;
static pthread_key_t team_key;
static pthread_once_t team_once = PTHREAD_ONCE_INIT;
static int team_key_ok = 0;
static int cpu_count = 0;
static int bind_workers = 0;

static void release_team(void *workers)
{
    atomic_fetch_sub(&team_workers, (long)(intptr_t)workers);
}

static int binding_requested(void)
{
#ifdef __linux__
    const char *value = getenv("NNFAST_PIN_THREADS");
    if (value != NULL && strcmp(value, "0") == 0) {
        return 0;
    }
    return omp_get_proc_bind() == omp_proc_bind_false;
#else
    return 0;
#endif
}

static void create_team_key(void)
{
    team_key_ok = pthread_key_create(&team_key, release_team) == 0;
    cpu_count = omp_get_num_procs();
    bind_workers = binding_requested();
}

/* Bind workers 1 to n_threads - 1 of the calling thread's team to CPUs of
 * its mask, one each, after the CPU it runs on. Does nothing when the mask
 * has fewer CPUs than the team or cannot be read, and a worker whose bind
 * fails stays free. */
static void bind_team_workers(int n_threads)
{
#ifdef __linux__
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
        return;
    }
    int count = CPU_COUNT(&allowed);
    if (count < n_threads) {
        return;
    }
    int cpus[CPU_SETSIZE];
    int listed = 0, first = 0;
    int current = sched_getcpu();
    for (int cpu = 0; cpu < CPU_SETSIZE && listed < count; cpu++) {
        if (CPU_ISSET(cpu, &allowed)) {
            if (cpu == current) {
                first = listed;
            }
            cpus[listed++] = cpu;
        }
    }
    #pragma omp parallel num_threads(n_threads)
    {
        int tid = omp_get_thread_num();
        if (tid > 0) {
            cpu_set_t only_cpu;
            CPU_ZERO(&only_cpu);
            CPU_SET(cpus[(first + tid) % count], &only_cpu);
            pthread_setaffinity_np(pthread_self(), sizeof only_cpu, &only_cpu);
        }
    }
#else
    (void)n_threads;
#endif
}

int nnf_binds_workers(void)
{
    pthread_once(&team_once, create_team_key);
    return bind_workers;
}

int nnf_parallel_threads(int n_threads, double work, double min_work)
{
    if (n_threads < 2 || work < min_work) {
        return 1;
    }
    pthread_once(&team_once, create_team_key);
    if (!team_key_ok) {
        return n_threads;
    }
    /* A team keeps its workers after a smaller region, so it only grows. */
    long mine = (long)(intptr_t)pthread_getspecific(team_key);
    long grown = n_threads - 1 > mine ? n_threads - 1 : mine;
    long total = atomic_load(&team_workers) - mine + grown;
    if (1 + total > cpu_count && work < min_work * NNF_SHARED_CPU_WORK_SCALE) {
        return 1;
    }
    if (grown > mine && pthread_setspecific(team_key, (void *)(intptr_t)grown) == 0) {
        atomic_fetch_add(&team_workers, grown - mine);
        if (bind_workers && 1 + total <= cpu_count) {
            bind_team_workers(n_threads);
        }
    }
    return n_threads;
}

#else

int nnf_binds_workers(void)
{
    return 0;
}

int nnf_parallel_threads(int n_threads, double work, double min_work)
{
    if (n_threads < 2 || work < min_work) {
        return 1;
    }
    return n_threads;
}

#endif
