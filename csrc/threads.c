/*
 * OpenMP helpers. The header <omp.h> is used only when the build found
 * OpenMP. Without it, every query returns what a single-threaded runtime would.
 */
#ifdef __linux__
#define _GNU_SOURCE /* sched_getcpu, sched_setaffinity and CPU_SET */
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
 * Worker binding on Linux. An unbound worker woken after a pause may wait
 * milliseconds before it runs: 3 to 8 ms per batch of two-thread regions
 * after 300 ms pauses on the project's 2-vCPU VM, and under 0.1 ms once
 * the worker was bound. So when a thread's team grows and the teams fit on
 * the CPUs, each new worker gets a CPU of its own. The calling thread stays
 * free, so threads it starts later keep its CPU mask. NNFAST_PIN_THREADS=0
 * or any OpenMP binding variable turns binding off.
 */
#if defined(_OPENMP) && !defined(_WIN32)

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __linux__
#include <dirent.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The largest team whose workers are bound, so that the team's thread ids
 * fit in arrays on the stack. */
#define NNF_MAX_BOUND_TEAM 256
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
    /* Any OpenMP binding variable, OMP_PROC_BIND=false included, leaves the
     * threads to the OpenMP runtime. */
    static const char *const openmp_names[] = {"OMP_PROC_BIND", "OMP_PLACES",
                                               "GOMP_CPU_AFFINITY"};
    for (size_t i = 0; i < sizeof openmp_names / sizeof openmp_names[0]; i++) {
        if (getenv(openmp_names[i]) != NULL) {
            return 0;
        }
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

#ifdef __linux__
/* Return the single CPU that thread tid is bound to, or -1 when its mask
 * contains several CPUs or cannot be read. */
static int bound_cpu(pid_t tid)
{
    cpu_set_t mask;
    if (sched_getaffinity(tid, sizeof mask, &mask) != 0 || CPU_COUNT(&mask) != 1) {
        return -1;
    }
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (CPU_ISSET(cpu, &mask)) {
            return cpu;
        }
    }
    return -1;
}

/* Add to *bound the CPUs that threads of this process other than the
 * calling thread and its workers are bound to alone. Each compiled module
 * keeps its own team counts, so the masks are the one record that every
 * module can read. Return 0 when /proc/self/task cannot be read. */
static int cpus_bound_elsewhere(const pid_t *team, int n_threads, cpu_set_t *bound)
{
    DIR *tasks = opendir("/proc/self/task");
    if (tasks == NULL) {
        return 0;
    }
    struct dirent *entry;
    while ((entry = readdir(tasks)) != NULL) {
        pid_t tid = (pid_t)atol(entry->d_name);
        int in_team = tid <= 0;
        for (int i = 0; i < n_threads && !in_team; i++) {
            in_team = tid == team[i];
        }
        int cpu = in_team ? -1 : bound_cpu(tid);
        if (cpu >= 0) {
            CPU_SET(cpu, bound);
        }
    }
    closedir(tasks);
    return 1;
}

/* Bind each unbound worker of the calling thread's team to a CPU of the
 * caller's mask that no other thread is bound to, in order after the CPU
 * the caller runs on. Binds nothing unless such CPUs, the caller's
 * included, number at least the team. Call it under the binding lock. */
static void bind_free_workers(int n_threads)
{
    if (n_threads > NNF_MAX_BOUND_TEAM) {
        return;
    }
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 ||
        CPU_COUNT(&allowed) < n_threads) {
        return;
    }
    pid_t team[NNF_MAX_BOUND_TEAM] = {0};
    int team_size = 0;
    #pragma omp parallel num_threads(n_threads)
    {
        team[omp_get_thread_num()] = (pid_t)syscall(SYS_gettid);
        #pragma omp single
        team_size = omp_get_num_threads();
    }
    cpu_set_t unavailable;
    CPU_ZERO(&unavailable);
    if (!cpus_bound_elsewhere(team, team_size, &unavailable)) {
        return;
    }
    int open_cpus = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        open_cpus += CPU_ISSET(cpu, &allowed) && !CPU_ISSET(cpu, &unavailable);
    }
    if (open_cpus < team_size) {
        return;
    }
    int unbound[NNF_MAX_BOUND_TEAM];
    int n_unbound = 0;
    for (int i = 1; i < team_size; i++) {
        int cpu = bound_cpu(team[i]);
        if (cpu >= 0) {
            CPU_SET(cpu, &unavailable);
        } else {
            unbound[n_unbound++] = i;
        }
    }
    int current = sched_getcpu();
    if (current >= 0 && current < CPU_SETSIZE) {
        CPU_SET(current, &unavailable);
    }
    int free_cpus[NNF_MAX_BOUND_TEAM];
    int n_free = 0;
    int start = current >= 0 ? current + 1 : 0;
    for (int step = 0; step < CPU_SETSIZE && n_free < n_unbound; step++) {
        int cpu = (start + step) % CPU_SETSIZE;
        if (CPU_ISSET(cpu, &allowed) && !CPU_ISSET(cpu, &unavailable)) {
            free_cpus[n_free++] = cpu;
        }
    }
    if (n_free < n_unbound) {
        return;
    }
    for (int i = 0; i < n_unbound; i++) {
        cpu_set_t only_cpu;
        CPU_ZERO(&only_cpu);
        CPU_SET(free_cpus[i], &only_cpu);
        sched_setaffinity(team[unbound[i]], sizeof only_cpu, &only_cpu);
    }
}
#endif

/* Run bind_free_workers under one lock for the whole process. The lock of
 * an unnamed critical section lives in the OpenMP runtime, which every
 * compiled module shares. Without it, two threads that bind at once could
 * each miss the other's binding and pick the same CPU. */
static void bind_team_workers(int n_threads)
{
#ifdef __linux__
    #pragma omp critical
    bind_free_workers(n_threads);
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
