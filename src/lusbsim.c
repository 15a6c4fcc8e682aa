/* mpctl.usbsim: the host that serves simulated USB devices to unchanged libusb clients through
 * umockdev (docs/simulators.md, ../shared/reference/usb-sim.md). Built only when umockdev is found.
 *
 * The host only speaks usbfs: it decodes the ioctls libusb's Linux backend issues on
 * /dev/bus/usb/BBB/DDD and hands each USB-level request to a device model written in Lua
 * (lua/mpctl/sim/usb/...), which has its own descriptors, tables and codecs. The model answers;
 * the host encodes the answer back into the client's URB.
 *
 *   usbsim.preloaded() -> bool           this process runs under libumockdev-preload (needed for hotplug)
 *   usbsim.reexec(argv)                   execs this program again with the preload (does not return)
 *   usbsim.cmdline() -> {words}           this process's command line (/proc/self/cmdline), for reexec
 *   usbsim.spawn(argv) -> pid   usbsim.waitpid(pid) -> code | nil   usbsim.kill(pid [, sig])
 *   usbsim.testbed() -> tb                a fresh umockdev testbed (sets UMOCKDEV_DIR here)
 *   tb:root() -> dir
 *   tb:add(text) -> syspath               umockdev text format (P:, N:, E:, A:, H: lines)
 *   tb:attach(devnode) -> id              serve usbfs ioctls on devnode (e.g. /dev/bus/usb/001/002)
 *   tb:detach(id)                         the device is gone: its ioctls fail with ENODEV
 *   tb:remove(syspath)                    remove (uevent "remove")
 *   tb:dev_fd(devnode) -> master, slave   the pty behind an emulated tty node (both fds are the caller's)
 *   tb:next(timeout_s) -> req | nil       the next request for a model:
 *        { id=, op="control", setup=<8 bytes>, data=<OUT bytes> }   (IN: reply with data)
 *        { id=, op="bulk", ep=, data=<OUT bytes> | length=<IN length> }
 *        { id=, op="set_alt", iface=, alt= } | { id=, op="reset" } | { id=, op="clear_halt", ep= }
 *        | { id=, op="claim"|"release", iface= }
 *   tb:reply(status [, data])             status "ok" | "stall" | "nodev" | "timeout"
 *   tb:close()                            (also __close/__gc): stops serving, removes the tree
 *
 * Threads: umockdev runs ioctl handlers on its own worker thread. The Lua state is only touched
 * by the thread that owns it: the worker hands one request at a time to that thread (a mutex and
 * two condition variables) and waits for tb:reply. Clients are served one ioctl at a time anyway
 * (umockdev 0.17), so nothing is lost by the hand-off. Device latency (erase time, bwPollTimeout)
 * lives in the models' clocks, never in held-back URBs: a URB that completes late makes libusb
 * busy-poll the always-ready umockdev node (usb-sim.md).
 */
#include "mpctl.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <linux/usbdevice_fs.h>
#include <stdint.h>
#include <stdio.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <umockdev.h>

#define TB_MT "mpctl.usbsim.testbed"
#define MAX_DEVS 16
#define MAX_QUEUE 64
#define MAX_XFER (1 << 20)

struct sim_dev;

struct host {
    UMockdevTestbed *tb;
    pthread_mutex_t mu;
    pthread_cond_t have_req, have_reply;
    int closed;
    /* the one request in flight (worker -> Lua) */
    int pending, answered;
    int req_dev;
    const char *op;
    int ep, iface, alt, in_len;
    unsigned char setup[8];
    unsigned char *out;
    size_t out_len;
    /* the answer (Lua -> worker) */
    int status; /* 0, -EPIPE, -ENODEV, -ETIMEDOUT */
    unsigned char *in;
    size_t in_len_got;
    struct sim_dev *devs[MAX_DEVS];
};

struct sim_dev {
    struct host *host;
    int id;
    int gone;
    char *devnode;
    UMockdevIoctlBase *handler;
    gulong queue[MAX_QUEUE]; /* client addresses of completed URBs, oldest first */
    int nqueue;
};

struct tb_ud {
    struct host *h;
};

/* ---- worker side ---------------------------------------------------------------------------- */

/* Hands the prepared request to the Lua thread and waits for its answer. Called with mu held. */
static void ask_model(struct host *h)
{
    h->pending = 1;
    h->answered = 0;
    pthread_cond_broadcast(&h->have_req);
    while (!h->answered && !h->closed)
        pthread_cond_wait(&h->have_reply, &h->mu);
    if (!h->answered)
        h->status = -ENODEV;
    h->pending = 0;
}

static void complete(UMockdevIoctlClient *client, int rc, int err)
{
    umockdev_ioctl_client_complete(client, rc, err);
}

/* A simple request (no data): asks the model and completes with its status. */
static void simple_request(struct sim_dev *d, UMockdevIoctlClient *client, const char *op, int a, int b)
{
    struct host *h = d->host;
    pthread_mutex_lock(&h->mu);
    h->req_dev = d->id;
    h->op = op;
    h->iface = a;
    h->ep = a;
    h->alt = b;
    h->out = NULL;
    h->out_len = 0;
    ask_model(h);
    int st = h->status;
    free(h->in);
    h->in = NULL;
    pthread_mutex_unlock(&h->mu);
    complete(client, st ? -1 : 0, st ? -st : 0);
}

static int read_uint(UMockdevIoctlData *arg, unsigned *v)
{
    UMockdevIoctlData *p = umockdev_ioctl_data_resolve(arg, 0, sizeof(unsigned), NULL);
    if (!p)
        return -1;
    memcpy(v, p->data, sizeof *v);
    umockdev_ioctl_data_unref(p);
    return 0;
}

/* SUBMITURB: decode, ask the model, encode its answer into the URB, queue the URB for reaping. */
static void submit_urb(struct sim_dev *d, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
    struct host *h = d->host;
    UMockdevIoctlData *urb_data = umockdev_ioctl_data_resolve(arg, 0, sizeof(struct usbdevfs_urb), NULL);
    if (!urb_data) {
        complete(client, -1, EFAULT);
        return;
    }
    struct usbdevfs_urb *urb = (struct usbdevfs_urb *)urb_data->data;
    int blen = urb->buffer_length;
    int is_ctrl = urb->type == USBDEVFS_URB_TYPE_CONTROL;
    if ((urb->type != USBDEVFS_URB_TYPE_CONTROL && urb->type != USBDEVFS_URB_TYPE_BULK) || blen < 0 ||
        blen > MAX_XFER || (is_ctrl && blen < 8) || d->nqueue >= MAX_QUEUE) {
        umockdev_ioctl_data_unref(urb_data);
        complete(client, -1, EINVAL);
        return;
    }
    UMockdevIoctlData *buf = blen ? umockdev_ioctl_data_resolve(urb_data, offsetof(struct usbdevfs_urb, buffer),
                                                               (gsize)blen, NULL)
                                  : NULL;
    if (blen && !buf) {
        umockdev_ioctl_data_unref(urb_data);
        complete(client, -1, EFAULT);
        return;
    }
    pthread_mutex_lock(&h->mu);
    h->req_dev = d->id;
    int in;
    if (is_ctrl) {
        memcpy(h->setup, buf->data, 8);
        int wlength = buf->data[6] | (buf->data[7] << 8);
        in = (buf->data[0] & 0x80) != 0;
        if (wlength > blen - 8)
            wlength = blen - 8;
        h->op = "control";
        h->out = in ? NULL : buf->data + 8;
        h->out_len = in ? 0 : (size_t)wlength;
        h->in_len = in ? wlength : 0;
    } else {
        in = (urb->endpoint & 0x80) != 0;
        h->op = "bulk";
        h->ep = urb->endpoint;
        h->out = in ? NULL : (buf ? buf->data : NULL);
        h->out_len = in ? 0 : (size_t)blen;
        h->in_len = in ? blen : 0;
    }
    ask_model(h);
    int actual = 0;
    if (h->status == 0 && in && h->in) {
        size_t room = (size_t)(is_ctrl ? h->in_len : blen);
        size_t n = h->in_len_got < room ? h->in_len_got : room;
        memcpy(buf->data + (is_ctrl ? 8 : 0), h->in, n);
        actual = (int)n;
    } else if (h->status == 0) {
        actual = (int)h->out_len;
    }
    urb->status = h->status;
    urb->actual_length = actual;
    free(h->in);
    h->in = NULL;
    int gone = h->status == -ENODEV;
    pthread_mutex_unlock(&h->mu);
    if (gone) {
        /* the device vanished during the request: the URB never completes; the fd is dead */
        if (buf)
            umockdev_ioctl_data_unref(buf);
        umockdev_ioctl_data_unref(urb_data);
        complete(client, -1, ENODEV);
        return;
    }
    d->queue[d->nqueue++] = urb_data->client_addr;
    if (buf)
        umockdev_ioctl_data_unref(buf);
    umockdev_ioctl_data_unref(urb_data);
    complete(client, 0, 0);
}

static void reap_urb(struct sim_dev *d, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
    if (d->nqueue == 0) {
        complete(client, -1, d->gone ? ENODEV : EAGAIN);
        return;
    }
    UMockdevIoctlData *slot = umockdev_ioctl_data_resolve(arg, 0, sizeof(void *), NULL);
    if (!slot) {
        complete(client, -1, EFAULT);
        return;
    }
    gulong addr = d->queue[0];
    memmove(d->queue, d->queue + 1, (size_t)(d->nqueue - 1) * sizeof d->queue[0]);
    d->nqueue--;
    void *p = (void *)(uintptr_t)addr;
    memcpy(slot->data, &p, sizeof p);
    umockdev_ioctl_data_unref(slot);
    complete(client, 0, 0);
}

static gboolean handle_ioctl(UMockdevIoctlBase *handler, UMockdevIoctlClient *client, gpointer user)
{
    (void)handler;
    struct sim_dev *d = user;
    gulong req = umockdev_ioctl_client_get_request(client);
    UMockdevIoctlData *arg = umockdev_ioctl_client_get_arg(client);
    unsigned v = 0;
    if (d->gone && req != USBDEVFS_REAPURBNDELAY && req != USBDEVFS_REAPURB) {
        complete(client, -1, ENODEV);
        return TRUE;
    }
    switch (req) {
    case USBDEVFS_GET_CAPABILITIES: {
        UMockdevIoctlData *p = umockdev_ioctl_data_resolve(arg, 0, sizeof(guint32), NULL);
        if (!p) {
            complete(client, -1, EFAULT);
            return TRUE;
        }
        guint32 caps = USBDEVFS_CAP_BULK_CONTINUATION | USBDEVFS_CAP_NO_PACKET_SIZE_LIM | USBDEVFS_CAP_ZERO_PACKET;
        memcpy(p->data, &caps, sizeof caps);
        umockdev_ioctl_data_unref(p);
        complete(client, 0, 0);
        return TRUE;
    }
    case USBDEVFS_SUBMITURB:
        submit_urb(d, client, arg);
        return TRUE;
    case USBDEVFS_REAPURB:
    case USBDEVFS_REAPURBNDELAY:
        reap_urb(d, client, arg);
        return TRUE;
    case USBDEVFS_DISCARDURB:
        complete(client, -1, EINVAL); /* every URB completed at submission already */
        return TRUE;
    case USBDEVFS_CLAIMINTERFACE:
    case USBDEVFS_RELEASEINTERFACE:
        if (read_uint(arg, &v) != 0) {
            complete(client, -1, EFAULT);
            return TRUE;
        }
        simple_request(d, client, req == USBDEVFS_CLAIMINTERFACE ? "claim" : "release", (int)v, 0);
        return TRUE;
    case USBDEVFS_SETINTERFACE: {
        UMockdevIoctlData *p = umockdev_ioctl_data_resolve(arg, 0, sizeof(struct usbdevfs_setinterface), NULL);
        if (!p) {
            complete(client, -1, EFAULT);
            return TRUE;
        }
        struct usbdevfs_setinterface si;
        memcpy(&si, p->data, sizeof si);
        umockdev_ioctl_data_unref(p);
        simple_request(d, client, "set_alt", (int)si.interface, (int)si.altsetting);
        return TRUE;
    }
    case USBDEVFS_CLEAR_HALT:
        if (read_uint(arg, &v) != 0) {
            complete(client, -1, EFAULT);
            return TRUE;
        }
        simple_request(d, client, "clear_halt", (int)v, 0);
        return TRUE;
    case USBDEVFS_RESET:
        simple_request(d, client, "reset", 0, 0);
        return TRUE;
    case USBDEVFS_SETCONFIGURATION:
    case USBDEVFS_RESETEP:
    case USBDEVFS_DISCONNECT_CLAIM:
        complete(client, 0, 0);
        return TRUE;
    case USBDEVFS_GETDRIVER:
        complete(client, -1, ENODATA); /* no kernel driver bound: nothing to detach */
        return TRUE;
    case USBDEVFS_CONNECTINFO: {
        UMockdevIoctlData *p = umockdev_ioctl_data_resolve(arg, 0, sizeof(struct usbdevfs_connectinfo), NULL);
        if (p) {
            struct usbdevfs_connectinfo ci = {.devnum = 0, .slow = 0};
            memcpy(p->data, &ci, sizeof ci);
            umockdev_ioctl_data_unref(p);
        }
        complete(client, p ? 0 : -1, p ? 0 : EFAULT);
        return TRUE;
    }
    case USBDEVFS_GET_SPEED:
        complete(client, 2 /* USB_SPEED_FULL: the STM32F4 OTG_FS port */, 0);
        return TRUE;
    default:
        complete(client, -1, ENOTTY);
        return TRUE;
    }
}

/* ---- Lua side ------------------------------------------------------------------------------- */

static struct host *check_tb(lua_State *L)
{
    struct tb_ud *u = luaL_checkudata(L, 1, TB_MT);
    if (!u->h)
        luaL_error(L, "usbsim: testbed is closed");
    return u->h;
}

static int l_preloaded(lua_State *L)
{
    const char *pre = getenv("LD_PRELOAD");
    lua_pushboolean(L, pre && strstr(pre, "libumockdev-preload") != NULL);
    return 1;
}

/* usbsim.cmdline(): read in C because the recipe file policy (sandbox) keeps Lua's io.open to the
 * recipe's folders, and reexec needs the command line as it was given. */
static int l_cmdline(lua_State *L)
{
    FILE *f = fopen("/proc/self/cmdline", "rb");
    if (!f)
        return luaL_error(L, "usbsim.cmdline: /proc/self/cmdline: %s", strerror(errno));
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        luaL_addlstring(&b, chunk, n);
    fclose(f);
    luaL_pushresult(&b);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    lua_newtable(L);
    int i = 0;
    for (size_t at = 0; at < len;) {
        size_t w = strnlen(s + at, len - at);
        lua_pushlstring(L, s + at, w);
        lua_rawseti(L, -2, ++i);
        at += w + 1;
    }
    return 1;
}

/* usbsim.reexec(argv): the preload must be there from exec on (it interposes libc calls), so a
 * process that finds itself without it starts itself again with it, as umockdev-wrapper does. */
static int l_reexec(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, LUA_REGISTRYINDEX, MPCTL_REG_EXE);
    const char *exe = lua_tostring(L, -1);
    if (!exe)
        return luaL_error(L, "usbsim.reexec: the mpctl executable is unknown");
    int n = (int)luaL_len(L, 1);
    char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 2), 0);
    argv[0] = (char *)exe;
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        argv[i] = (char *)luaL_checkstring(L, -1);
        lua_pop(L, 1); /* still referenced by the table */
    }
    argv[n + 1] = NULL;
    const char *old = getenv("LD_PRELOAD");
    char pre[1024];
    snprintf(pre, sizeof pre, "libumockdev-preload.so.0%s%s", old && *old ? ":" : "", old ? old : "");
    setenv("LD_PRELOAD", pre, 1);
    /* ASan must come first in the library list; with the preload in front it refuses to start */
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[1024];
    snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", asan ? asan : "", asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    execv(exe, argv);
    return luaL_error(L, "usbsim.reexec %s: %s", exe, strerror(errno));
}

extern char **environ;

/* usbsim.spawn(argv) -> pid: the command a `mpctl sim pyboard -- COMMAND` serves, with this
 * process's stdin/stdout/stderr and environment (UMOCKDEV_DIR, LD_PRELOAD), unlike mpctl.proc,
 * which gives its children pipes or a pty. */
static int l_spawn(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int n = (int)luaL_len(L, 1);
    luaL_argcheck(L, n >= 1, 1, "empty command");
    char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        argv[i - 1] = (char *)luaL_checkstring(L, -1);
        lua_pop(L, 1);
    }
    argv[n] = NULL;
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
    if (rc != 0)
        return luaL_error(L, "cannot run %s: %s", argv[0], strerror(rc));
    lua_pushinteger(L, pid);
    return 1;
}

/* usbsim.waitpid(pid) -> exit code (128+N for signal N), or nil while it runs. Never blocks. */
static int l_waitpid(lua_State *L)
{
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == 0 || (r < 0 && errno == EINTR))
        return 0;
    if (r < 0)
        return luaL_error(L, "waitpid %d: %s", (int)pid, strerror(errno));
    lua_pushinteger(L, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0));
    return 1;
}

static int l_kill(lua_State *L)
{
    kill((pid_t)luaL_checkinteger(L, 1), (int)luaL_optinteger(L, 2, SIGTERM));
    return 0;
}

static int l_testbed(lua_State *L)
{
    struct tb_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->h = NULL;
    luaL_setmetatable(L, TB_MT);
    struct host *h = calloc(1, sizeof *h);
    if (!h)
        return luaL_error(L, "usbsim: out of memory");
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->have_req, NULL);
    pthread_cond_init(&h->have_reply, NULL);
    h->tb = umockdev_testbed_new();
    u->h = h;
    return 1;
}

static int tb_root(lua_State *L)
{
    struct host *h = check_tb(L);
    gchar *root = umockdev_testbed_get_root_dir(h->tb);
    lua_pushstring(L, root);
    g_free(root);
    return 1;
}

static int tb_add(lua_State *L)
{
    struct host *h = check_tb(L);
    const char *text = luaL_checkstring(L, 2);
    GError *err = NULL;
    if (!umockdev_testbed_add_from_string(h->tb, text, &err)) {
        lua_pushfstring(L, "usbsim: adding device: %s", err ? err->message : "?");
        g_clear_error(&err);
        return lua_error(L);
    }
    const char *p = strstr(text, "P: ");
    if (p) {
        p += 3;
        lua_pushfstring(L, "/sys%s", lua_pushlstring(L, p, strcspn(p, "\n")));
        return 1;
    }
    return 0;
}

static int tb_attach(lua_State *L)
{
    struct host *h = check_tb(L);
    const char *node = luaL_checkstring(L, 2);
    int id = 0;
    while (id < MAX_DEVS && h->devs[id])
        id++;
    if (id == MAX_DEVS)
        return luaL_error(L, "usbsim: at most %d devices", MAX_DEVS);
    struct sim_dev *d = calloc(1, sizeof *d);
    if (!d)
        return luaL_error(L, "usbsim: out of memory");
    d->host = h;
    d->id = id + 1;
    d->devnode = strdup(node);
    d->handler = umockdev_ioctl_base_new();
    if (!g_signal_connect(d->handler, "handle-ioctl", G_CALLBACK(handle_ioctl), d)) {
        g_object_unref(d->handler);
        free(d->devnode);
        free(d);
        return luaL_error(L, "usbsim: this umockdev has no handle-ioctl signal");
    }
    GError *err = NULL;
    if (!umockdev_testbed_attach_ioctl(h->tb, node, d->handler, &err)) {
        lua_pushfstring(L, "usbsim: attaching %s: %s", node, err ? err->message : "?");
        g_clear_error(&err);
        g_object_unref(d->handler);
        free(d->devnode);
        free(d);
        return lua_error(L);
    }
    h->devs[id] = d;
    lua_pushinteger(L, d->id);
    return 1;
}

static struct sim_dev *dev_by_id(lua_State *L, struct host *h, int idx)
{
    lua_Integer id = luaL_checkinteger(L, idx);
    luaL_argcheck(L, id >= 1 && id <= MAX_DEVS && h->devs[id - 1], idx, "no such simulated device");
    return h->devs[id - 1];
}

/* tb:detach(id): the device is unplugged; the ioctl handler stays attached (umockdev may still
 * route a client's late ioctls to it) and answers them with ENODEV. */
static int tb_detach(lua_State *L)
{
    struct host *h = check_tb(L);
    struct sim_dev *d = dev_by_id(L, h, 2);
    pthread_mutex_lock(&h->mu);
    d->gone = 1;
    pthread_mutex_unlock(&h->mu);
    return 0;
}

static int tb_remove(lua_State *L)
{
    struct host *h = check_tb(L);
    umockdev_testbed_remove_device(h->tb, luaL_checkstring(L, 2));
    return 0;
}

static int tb_dev_fd(lua_State *L)
{
    struct host *h = check_tb(L);
    int fd = umockdev_testbed_get_dev_fd(h->tb, luaL_checkstring(L, 2));
    if (fd < 0)
        return luaL_error(L, "usbsim: %s has no pty behind it", lua_tostring(L, 2));
    int master = dup(fd);
    /* A pty master reads EIO (which a port takes for a hang-up) while no slave is open, i.e.
     * until a client opens the node: the simulator holds a slave open for as long as it serves. */
    char name[128];
    int slave = -1;
    if (master >= 0 && ptsname_r(master, name, sizeof name) == 0)
        slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    struct termios t;
    if (slave >= 0 && tcgetattr(slave, &t) == 0) {
        cfmakeraw(&t); /* no echo: what the device says must not come back to it as input */
        tcsetattr(slave, TCSANOW, &t);
    }
    lua_pushinteger(L, master);
    lua_pushinteger(L, slave);
    return 2;
}

static int tb_next(lua_State *L)
{
    struct host *h = check_tb(L);
    double timeout = luaL_optnumber(L, 2, 0);
    mpctl_check_interrupt(L); /* callers loop on short timeouts: Ctrl-C ends the loop here */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    double t = (double)until.tv_sec + until.tv_nsec / 1e9 + (timeout > 0 ? timeout : 0);
    until.tv_sec = (time_t)t;
    until.tv_nsec = (long)((t - (double)until.tv_sec) * 1e9);
    pthread_mutex_lock(&h->mu);
    while (!h->pending && timeout > 0)
        if (pthread_cond_timedwait(&h->have_req, &h->mu, &until) == ETIMEDOUT)
            break;
    if (!h->pending || h->answered) {
        pthread_mutex_unlock(&h->mu);
        return 0;
    }
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, h->req_dev);
    lua_setfield(L, -2, "id");
    lua_pushstring(L, h->op);
    lua_setfield(L, -2, "op");
    if (strcmp(h->op, "control") == 0) {
        lua_pushlstring(L, (const char *)h->setup, 8);
        lua_setfield(L, -2, "setup");
    }
    if (strcmp(h->op, "bulk") == 0 || strcmp(h->op, "clear_halt") == 0) {
        lua_pushinteger(L, h->ep);
        lua_setfield(L, -2, "ep");
    }
    if (h->out) {
        lua_pushlstring(L, (const char *)h->out, h->out_len);
        lua_setfield(L, -2, "data");
    } else if (strcmp(h->op, "control") == 0 || strcmp(h->op, "bulk") == 0) {
        if (strcmp(h->op, "control") == 0 && !(h->setup[0] & 0x80)) {
            lua_pushliteral(L, "");
            lua_setfield(L, -2, "data");
        } else {
            lua_pushinteger(L, h->in_len);
            lua_setfield(L, -2, "length");
        }
    }
    if (strcmp(h->op, "set_alt") == 0 || strcmp(h->op, "claim") == 0 || strcmp(h->op, "release") == 0) {
        lua_pushinteger(L, h->iface);
        lua_setfield(L, -2, "iface");
        lua_pushinteger(L, h->alt);
        lua_setfield(L, -2, "alt");
    }
    pthread_mutex_unlock(&h->mu);
    return 1;
}

static int tb_reply(lua_State *L)
{
    struct host *h = check_tb(L);
    static const char *const names[] = {"ok", "stall", "nodev", "timeout", NULL};
    static const int codes[] = {0, -EPIPE, -ENODEV, -ETIMEDOUT};
    int st = codes[luaL_checkoption(L, 2, "ok", names)];
    size_t len = 0;
    const char *data = luaL_optlstring(L, 3, NULL, &len);
    pthread_mutex_lock(&h->mu);
    if (!h->pending || h->answered) {
        pthread_mutex_unlock(&h->mu);
        return luaL_error(L, "usbsim: reply without a request");
    }
    h->status = st;
    h->in = NULL;
    h->in_len_got = 0;
    if (data && len) {
        h->in = malloc(len);
        if (h->in) {
            memcpy(h->in, data, len);
            h->in_len_got = len;
        }
    }
    h->answered = 1;
    pthread_cond_broadcast(&h->have_reply);
    pthread_mutex_unlock(&h->mu);
    return 0;
}

static int tb_close(lua_State *L)
{
    struct tb_ud *u = luaL_checkudata(L, 1, TB_MT);
    struct host *h = u->h;
    if (!h)
        return 0;
    u->h = NULL;
    pthread_mutex_lock(&h->mu);
    h->closed = 1;
    for (int i = 0; i < MAX_DEVS; i++)
        if (h->devs[i])
            h->devs[i]->gone = 1;
    pthread_cond_broadcast(&h->have_reply);
    pthread_mutex_unlock(&h->mu);
    g_object_unref(h->tb); /* stops the worker thread and deletes the tree */
    for (int i = 0; i < MAX_DEVS; i++) {
        if (!h->devs[i])
            continue;
        g_object_unref(h->devs[i]->handler);
        free(h->devs[i]->devnode);
        free(h->devs[i]);
    }
    free(h->in);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->have_req);
    pthread_cond_destroy(&h->have_reply);
    free(h);
    return 0;
}

int luaopen_mpctl_usbsim(lua_State *L)
{
    static const luaL_Reg meta[] = {{"__gc", tb_close}, {"__close", tb_close}, {NULL, NULL}};
    static const luaL_Reg methods[] = {
        {"root", tb_root},     {"add", tb_add},     {"attach", tb_attach}, {"detach", tb_detach},
        {"remove", tb_remove}, {"dev_fd", tb_dev_fd}, {"next", tb_next},   {"reply", tb_reply},
        {"close", tb_close},   {NULL, NULL}};
    static const luaL_Reg funcs[] = {
        {"preloaded", l_preloaded}, {"reexec", l_reexec}, {"cmdline", l_cmdline}, {"testbed", l_testbed},
        {"spawn", l_spawn},         {"waitpid", l_waitpid}, {"kill", l_kill},      {NULL, NULL}};
    mpctl_new_class(L, TB_MT, meta, methods);
    luaL_newlib(L, funcs);
    return 1;
}
