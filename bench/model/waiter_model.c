// waiter_model.c - model of a packlock waiter design, measured before the library
// adopts it. A waiter blocked in flock(2) on <pack>/.grex-lock can wait on a ghost
// inode once the lock file is renamed over or unlinked. The design lets the kernel
// interrupt that flock (EINTR) through a thread-directed real-time signal that an
// O_ASYNC inotify fd sends when the inode changes: no helper thread, no timer.
// Per acquisition: (1) flock LOCK_NB; if busy: (2) once per thread an inotify fd
// with F_SETOWN_EX(F_OWNER_TID) + F_SETSIG(SIGRTMAX-3), once per inode a watch
// (IN_ATTRIB|IN_MOVE_SELF|IN_DELETE_SELF via /proc/self/fd/N); (3) O_ASYNC on,
// drain read, unblock the signal; (4) blocking flock; (5) re-block, O_ASYNC off;
// (6) statx ghost guard; (7) 512-byte owner record pwrite; (8) critical section.
// Measures (a) an 8x2000 counter against flock + guard, (b) handoff latency
// against a plain blocking flock, (c) that an inode change interrupts the blocked
// flock promptly and that nothing is signalled while O_ASYNC is off.
// Build: gcc -O2 -Wall -o /tmp/waiter_model waiter_model.c -lpthread -lrt
// Run:   d=$(mktemp -d) && /tmp/waiter_model "$d"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int SIG;
static volatile sig_atomic_t handled;  // handler invocations in this process
static volatile pid_t handled_tid;     // thread the last one ran on
static void on_sig(int s) { (void)s; handled++; handled_tid = (pid_t)syscall(SYS_gettid); }
static double now_us(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }
static int cmp(const void* a, const void* b) { double x = *(double*)a, y = *(double*)b; return x < y ? -1 : x > y; }
static void die(const char* m) { perror(m); exit(1); }

struct stats { long slow, drained, eintr, ghosts, signals; };
static __thread struct stats st;

// ---- the design
struct lk { int fd; const char* path; ino_t ino; dev_t dev; };
static void lk_open(struct lk* l, const char* path) {
  struct stat s;
  l->path = path; l->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (l->fd < 0 || fstat(l->fd, &s)) die("open lock");
  l->ino = s.st_ino; l->dev = s.st_dev;  // cached: the guard needs no fstat
}
static int same_inode(const struct lk* l) {  // step 6
  struct statx sx;
  if (statx(AT_FDCWD, l->path, AT_SYMLINK_NOFOLLOW, STATX_INO, &sx)) return 0;
  return sx.stx_ino == l->ino && makedev(sx.stx_dev_major, sx.stx_dev_minor) == l->dev;
}

static __thread struct { int ifd, wd; ino_t ino; dev_t dev; } ws = {-1, -1, 0, 0};
static void ws_setup(const struct lk* l) {  // step 2
  if (ws.ifd < 0) {
    struct f_owner_ex o = {F_OWNER_TID, (pid_t)syscall(SYS_gettid)};
    ws.ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (ws.ifd < 0 || fcntl(ws.ifd, F_SETOWN_EX, &o) || fcntl(ws.ifd, F_SETSIG, SIG)) die("inotify setup");
  }
  if (ws.wd >= 0 && ws.ino == l->ino && ws.dev == l->dev) return;
  if (ws.wd >= 0) inotify_rm_watch(ws.ifd, ws.wd);
  char p[64]; snprintf(p, sizeof p, "/proc/self/fd/%d", l->fd);
  ws.wd = inotify_add_watch(ws.ifd, p, IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF);
  if (ws.wd < 0) die("inotify_add_watch");
  ws.ino = l->ino; ws.dev = l->dev;
}
// The watch lives as long as the lock fd: once the fd is closed the inode may be freed
// and its number reused by the next file, which a (dev, ino) cache cannot tell apart.
static void lk_close(struct lk* l) {
  if (ws.wd >= 0 && ws.ino == l->ino && ws.dev == l->dev) { inotify_rm_watch(ws.ifd, ws.wd); ws.wd = -1; }
  close(l->fd);
}
static void async(int on) { if (fcntl(ws.ifd, F_SETFL, O_NONBLOCK | (on ? O_ASYNC : 0))) die("F_SETFL"); }
// Read what is queued (normally one read: EAGAIN). IN_IGNORED on our watch means the
// inode was freed; its number may be reused at once, so the cached watch is forgotten.
static int drain(void) {
  char buf[4096] __attribute__((aligned(8))); ssize_t len; int n = 0;
  while ((len = read(ws.ifd, buf, sizeof buf)) > 0)
    for (char* p = buf; p < buf + len; ++n) {
      struct inotify_event* e = (struct inotify_event*)p;
      if ((e->mask & IN_IGNORED) && e->wd == ws.wd) ws.wd = -1;
      p += sizeof *e + e->len;
    }
  return n;
}

// 0: owned; -2: ghost (the path names another inode: the caller reopens and retries).
// notify=0 leaves out steps 2-5 (LOCK_NB first, then a plain blocking flock).
static int model_lock(struct lk* l, int notify) {
  if (flock(l->fd, LOCK_EX | LOCK_NB) == 0) goto owned;
  if (errno != EWOULDBLOCK) die("flock NB");
  st.slow++;
  if (!notify) { while (flock(l->fd, LOCK_EX)) if (errno != EINTR) die("flock"); goto owned; }
  ws_setup(l);
  for (;;) {
    sigset_t s, old; sigemptyset(&s); sigaddset(&s, SIG);
    async(1);
    if (drain() > 0 && (st.drained++, !same_inode(l))) { async(0); st.ghosts++; return -2; }
    pthread_sigmask(SIG_UNBLOCK, &s, &old);
    int r = flock(l->fd, LOCK_EX), e = errno;
    if (sigismember(&old, SIG)) pthread_sigmask(SIG_SETMASK, &old, NULL);
    async(0);
    if (r == 0) break;
    if (e != EINTR) { errno = e; die("flock"); }
    st.eintr++; drain();  // woken: has the path moved on?
    if (!same_inode(l)) { st.ghosts++; return -2; }
  }
owned:
  if (!same_inode(l)) { flock(l->fd, LOCK_UN); st.ghosts++; return -2; }
  return 0;
}

// ---- (a) counter: 0 flock+guard (baseline), 1 +record, 2 model, 3 model without
// record, 4 model without steps 2-5 (NB first, then plain block) + guard + record.
enum { NMODE = 5 };
static const char* mname[NMODE] = {"flock+guard (baseline)", "flock+guard+record", "model (steps 1-8)",
                                   "model without record", "NB first, no inotify/signal"};
static struct stats* shared;  // per mode, summed over children and runs
static double counter(const char* lockp, const char* cnt, int mode) {
  int fd0 = open(cnt, O_RDWR | O_CREAT | O_TRUNC, 0666); if (write(fd0, "0\n", 2) != 2) die("write"); close(fd0);
  double t0 = now_us();
  for (int p = 0; p < 8; ++p) {
    if (fork() == 0) {
      struct lk l; lk_open(&l, lockp);
      int c = open(cnt, O_RDWR);
      char rec[512]; memset(rec, 'r', sizeof rec);
      for (int i = 0; i < 2000; ++i) {
        int r;
        if (mode <= 1) { while (flock(l.fd, LOCK_EX)) if (errno != EINTR) die("flock"); r = same_inode(&l) ? 0 : -2; }
        else r = model_lock(&l, mode != 4);
        if (r) { fprintf(stderr, "unexpected ghost\n"); _exit(1); }
        if (mode != 0 && mode != 3 && pwrite(l.fd, rec, sizeof rec, 0) != sizeof rec) die("record");
        char buf[32] = {0}; if (pread(c, buf, sizeof buf - 1, 0) < 0) die("pread");
        int len = snprintf(buf, sizeof buf, "%d\n", atoi(buf) + 1);
        if (pwrite(c, buf, len, 0) != len) die("pwrite");
        flock(l.fd, LOCK_UN);
      }
      st.signals = handled;
      long* d = (long*)&shared[mode]; long* s = (long*)&st;
      for (size_t k = 0; k < sizeof st / sizeof(long); ++k) __atomic_add_fetch(&d[k], s[k], __ATOMIC_RELAXED);
      _exit(0);
    }
  }
  for (int p = 0; p < 8; ++p) wait(NULL);
  double t = (now_us() - t0) / 1000.0;
  char buf[32] = {0}; int c = open(cnt, O_RDONLY); if (read(c, buf, sizeof buf - 1) < 0) die("read"); close(c);
  if (atoi(buf) != 16000) { fprintf(stderr, "COUNT WRONG: mode %d count %d\n", mode, atoi(buf)); exit(1); }
  return t;
}

// ---- (b) handoff: the parent holds, a child waits (0 blocking flock, 1 + guard, 2 model
// steps 1-6); a pipe carries the "owns" timestamp.
static void handoff(const char* path, int model, int rounds, double* out) {
  int p2c[2], c2p[2];
  if (pipe(p2c) || pipe(c2p)) die("pipe");
  pid_t pid = fork();
  if (pid == 0) {
    struct lk l; lk_open(&l, path);
    for (int i = 0; i < rounds; ++i) {
      char go; if (read(p2c[0], &go, 1) != 1) _exit(1);  // the parent holds now
      int r = model == 2 ? model_lock(&l, 1) : flock(l.fd, LOCK_EX);
      if (model == 1 && r == 0 && !same_inode(&l)) r = -2;
      double t = now_us();
      if (r != 0) { fprintf(stderr, "handoff lock failed\n"); _exit(1); }
      if (write(c2p[1], &t, sizeof t) != sizeof t) _exit(1);
      flock(l.fd, LOCK_UN);
    }
    _exit(model == 2 && st.slow != rounds);  // every model round must have blocked
  }
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666), status;
  for (int i = 0; i < rounds; ++i) {
    flock(fd, LOCK_EX);
    if (write(p2c[1], "g", 1) != 1) die("write");
    usleep(2000 + (i % 4) * 1000);  // the waiter is blocked by now
    double t0 = now_us();
    flock(fd, LOCK_UN);
    double t1; if (read(c2p[0], &t1, sizeof t1) != sizeof t1) die("read");
    out[i] = t1 - t0;
    usleep(300);
  }
  waitpid(pid, &status, 0);
  if (status) fprintf(stderr, "handoff child: status %d (model waits that did not block?)\n", status);
  close(fd); close(p2c[0]); close(p2c[1]); close(c2p[0]); close(c2p[1]);
}

// ---- (c) the inotify path: a waiter thread blocked on inode A; main renames over / unlinks.
struct cmsg { int r; long eintr; double t; pid_t tid, htid; int neg_sig, neg_ev, pos_sig, pos_thr, pos_fd; };
static int cgo[2], cdone[2];
static const char* cpath;
static int thread_sigpnd(void) {  // SIG pending for this thread only (not process-shared)
  FILE* f = fopen("/proc/thread-self/status", "r"); char line[256]; unsigned long long m = 0;
  while (fgets(line, sizeof line, f)) if (sscanf(line, "SigPnd: %llx", &m) == 1) break;
  fclose(f); return (int)((m >> (SIG - 1)) & 1);
}
// A fresh file at the path, watched; unlink it with O_ASYNC on or off (signal blocked).
static void unlink_check(int on, int* sig, int* ev, int* thr, int* fdok) {
  struct lk l; lk_open(&l, cpath); ws_setup(&l); drain();
  sigset_t s; sigemptyset(&s); sigaddset(&s, SIG);
  siginfo_t si; struct timespec z = {0, 0}; int h0 = handled;
  async(on); unlink(cpath); async(0);
  *thr = thread_sigpnd(); *sig = 0; *fdok = 1;
  while (sigtimedwait(&s, &si, &z) == SIG) { ++*sig; if (si.si_fd != ws.ifd) *fdok = 0; }
  *sig += handled - h0; *ev = drain();
  lk_close(&l);
}
static void* c_waiter(void* arg) {
  (void)arg; char go;
  while (read(cgo[0], &go, 1) == 1 && go == 'g') {
    struct cmsg m = {0}; struct lk l; long e0 = st.eintr; int h0 = handled;
    m.tid = (pid_t)syscall(SYS_gettid);
    lk_open(&l, cpath);  // inode A, held by main
    m.r = model_lock(&l, 1); m.t = now_us();
    m.eintr = st.eintr - e0; m.htid = handled > h0 ? handled_tid : 0;
    if (m.r == 0) flock(l.fd, LOCK_UN);
    lk_close(&l);
    unlink_check(0, &m.neg_sig, &m.neg_ev, &(int){0}, &(int){0});
    unlink_check(1, &m.pos_sig, &(int){0}, &m.pos_thr, &m.pos_fd);
    if (write(cdone[1], &m, sizeof m) != sizeof m) die("write");
  }
  return NULL;
}
static int blocked_on(ino_t ino) {  // a pending (blocked) request in /proc/locks
  FILE* f = fopen("/proc/locks", "r"); char line[256], key[64]; int n = 0;
  snprintf(key, sizeof key, ":%lu ", (unsigned long)ino);
  while (fgets(line, sizeof line, f)) if (strstr(line, key) && strstr(line, "->")) ++n;
  fclose(f); return n;
}

int main(int argc, char** argv) {
  const char* dir = argc > 1 ? argv[1] : "/tmp";
  char path[512], cnt[512], tmp[512];
  snprintf(path, sizeof path, "%s/.grex-lock", dir);
  snprintf(cnt, sizeof cnt, "%s/counter", dir);
  snprintf(tmp, sizeof tmp, "%s/.grex-lock.new", dir);
  SIG = SIGRTMAX - 3;
  struct sigaction sa = {0}; sa.sa_handler = on_sig; sigemptyset(&sa.sa_mask); sa.sa_flags = 0;  // no SA_RESTART
  sigaction(SIG, &sa, NULL);
  sigset_t s; sigemptyset(&s); sigaddset(&s, SIG); sigprocmask(SIG_BLOCK, &s, NULL);  // blocked outside waits
  shared = mmap(NULL, NMODE * sizeof *shared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

  double c[NMODE]; for (int m = 0; m < NMODE; ++m) c[m] = 1e9;
  for (int i = 0; i < 3; ++i)  // rotate the order each run
    for (int k = 0; k < NMODE; ++k) { int m = (k + i) % NMODE; double x = counter(path, cnt, m); if (x < c[m]) c[m] = x; }
  printf("(a) counter 8x2000, best of 3 (count 16000 verified every run):\n");
  for (int m = 0; m < NMODE; ++m)
    printf("  %-28s %6.1f ms  %.2fx | per run: blocked %ld, drained %ld, EINTR %ld, signals %ld\n", mname[m], c[m],
           c[m] / c[0], shared[m].slow / 3, shared[m].drained / 3, shared[m].eintr / 3, shared[m].signals / 3);

  enum { R = 400, B = 8 };
  static double h[3][R];
  for (int blk = 0; blk < B; ++blk)  // alternating blocks
    for (int m = 0; m < 3; ++m) handoff(path, m, R / B, h[m] + blk * (R / B));
  for (int m = 0; m < 3; ++m) qsort(h[m], R, sizeof(double), cmp);
  printf("(b) handoff p50/p99 us (%d rounds each): blocking flock %.1f / %.1f   +guard %.1f / %.1f   model (1-6) %.1f / %.1f\n"
         "    ratio model/blocking p50 %.2f p99 %.2f; model/(flock+guard) p50 %.2f p99 %.2f\n",
         R, h[0][R / 2], h[0][R * 99 / 100], h[1][R / 2], h[1][R * 99 / 100], h[2][R / 2], h[2][R * 99 / 100],
         h[2][R / 2] / h[0][R / 2], h[2][R * 99 / 100] / h[0][R * 99 / 100], h[2][R / 2] / h[1][R / 2],
         h[2][R * 99 / 100] / h[1][R * 99 / 100]);

  enum { CR = 40 };
  if (pipe(cgo) || pipe(cdone)) die("pipe");
  cpath = path; unlink(path);
  pthread_t th; pthread_create(&th, NULL, c_waiter, NULL);
  double lat[2][CR / 2]; int ok[2] = {0}, on_tid = 0, neg_sig = 0, neg_ev = 0, pos_sig = 0, pos_thr = 0, pos_fd = 0;
  for (int i = 0; i < CR; ++i) {
    int hold = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666); struct stat sb; fstat(hold, &sb);
    flock(hold, LOCK_EX);
    if (write(cgo[1], "g", 1) != 1) die("write");
    for (int k = 0; k < 10000 && !blocked_on(sb.st_ino); ++k) usleep(100);
    if (i % 2 == 0) close(open(tmp, O_RDWR | O_CREAT | O_CLOEXEC, 0666));
    usleep(500);
    double t0 = now_us();
    if (i % 2 ? unlink(path) : rename(tmp, path)) die("unlink/rename");
    struct pollfd pf = {cdone[0], POLLIN, 0};
    poll(&pf, 1, 1000);  // not interrupted: the release below wakes the waiter, the guard catches it
    flock(hold, LOCK_UN); close(hold);
    struct cmsg m; if (read(cdone[0], &m, sizeof m) != sizeof m) die("read");
    lat[i % 2][i / 2] = m.t - t0;
    ok[i % 2] += m.r == -2 && m.eintr > 0 && m.t - t0 < 1e5;
    on_tid += m.htid == m.tid; neg_sig += m.neg_sig; neg_ev += m.neg_ev > 0;
    pos_sig += m.pos_sig > 0; pos_thr += m.pos_thr; pos_fd += m.pos_sig > 0 && m.pos_fd;
  }
  if (write(cgo[1], "q", 1) != 1) die("write");
  pthread_join(th, NULL);
  for (int k = 0; k < 2; ++k) qsort(lat[k], CR / 2, sizeof(double), cmp);
  printf("(c) blocked flock interrupted by EINTR -> ghost: rename-over %d/%d (p50 %.0f us, max %.0f us), unlink %d/%d (p50 %.0f us, max %.0f us)\n",
         ok[0], CR / 2, lat[0][CR / 4], lat[0][CR / 2 - 1], ok[1], CR / 2, lat[1][CR / 4], lat[1][CR / 2 - 1]);
  printf("    handler ran on the waiter thread in %d/%d rounds\n", on_tid, CR);
  printf("    unlink with O_ASYNC off: %d signals in %d rounds (events queued in %d/%d rounds)\n", neg_sig, CR, neg_ev, CR);
  printf("    control, O_ASYNC on + signal blocked: signal pending %d/%d, thread-directed (SigPnd) %d/%d, si_fd right %d/%d\n",
         pos_sig, CR, pos_thr, CR, pos_fd, CR);
  return 0;
}
