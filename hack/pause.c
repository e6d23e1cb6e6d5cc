/*
 * The pod sandbox ("pause") process for the local containerd/kubelet node, which has no registry to
 * pull the usual one from. hack/build-image.sh compiles it statically and packs it alone into
 * localhost/pause:<tag>.
 *
 * It holds the pod's namespaces open: it sleeps in pause() until SIGINT or SIGTERM, then exits 0.
 * As PID 1 of a pod that shares its PID namespace it is also the reaper: on SIGCHLD it collects every
 * exited child so no zombie stays behind.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig)
{
    (void)sig;
    _exit(0);
}

static void on_child(int sig)
{
    int saved = errno;
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

static int handle(int sig, void (*fn)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    return sigaction(sig, &sa, NULL);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        puts("cxbackup pause");
        return 0;
    }
    if (handle(SIGINT, on_stop) != 0 || handle(SIGTERM, on_stop) != 0 || handle(SIGCHLD, on_child) != 0) {
        perror("pause: sigaction");
        return 1;
    }
    if (getpid() != 1) {
        fputs("pause: not running as PID 1; children of this namespace are reaped elsewhere\n", stderr);
    }
    for (;;) {
        pause();
    }
}
