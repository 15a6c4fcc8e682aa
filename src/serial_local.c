/* Local serial ports: real devices through libserialport, ptys (which libserialport does not
 * enumerate) through plain termios, and the modem-line shim libserialport lacks: DTR and RTS
 * in one TIOCMSET, as esptool's "unix tight" reset needs (anchors.md §3.1 and §5.5). */
#include "serial_port.h"

#include <errno.h>
#include <fcntl.h>
#include <libserialport.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <stdlib.h>
#include <unistd.h>

/* The backend's private state (port->priv). */
struct local_port {
    struct sp_port *sp; /* libserialport handle for real serial devices, NULL for a pty */
    int exclusive;      /* TIOCEXCL + flock taken: cleared again on close */
    int signals;        /* 1 while DTR/RTS can be carried; cleared at the first refusal */
};

static struct local_port *loc(const struct port *p)
{
    return p->priv;
}

void local_push_present(lua_State *L)
{
    struct sp_port **list = NULL;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "ports present: ");
    if (sp_list_ports(&list) != SP_OK || list == NULL || list[0] == NULL) {
        luaL_addstring(&b, "none found");
    } else {
        for (int i = 0; list[i]; i++) {
            if (i)
                luaL_addstring(&b, ", ");
            luaL_addstring(&b, sp_get_port_name(list[i]));
        }
    }
    if (list)
        sp_free_port_list(list);
    luaL_pushresult(&b);
}

static void set_str(lua_State *L, const char *key, const char *value)
{
    if (value) {
        lua_pushstring(L, value);
        lua_setfield(L, -2, key);
    }
}

static const char *transport_name(enum sp_transport t)
{
    switch (t) {
    case SP_TRANSPORT_USB: return "usb";
    case SP_TRANSPORT_NATIVE: return "native";
    case SP_TRANSPORT_BLUETOOTH: return "bluetooth";
    default: return "unknown";
    }
}

static void push_port_info(lua_State *L, const struct sp_port *sp)
{
    lua_newtable(L);
    set_str(L, "path", sp_get_port_name(sp));
    set_str(L, "description", sp_get_port_description(sp));
    enum sp_transport t = sp_get_port_transport(sp);
    set_str(L, "transport", transport_name(t));
    if (t == SP_TRANSPORT_USB) {
        int vid, pid;
        if (sp_get_port_usb_vid_pid(sp, &vid, &pid) == SP_OK) {
            lua_pushinteger(L, vid);
            lua_setfield(L, -2, "vid");
            lua_pushinteger(L, pid);
            lua_setfield(L, -2, "pid");
        }
        set_str(L, "serial", sp_get_port_usb_serial(sp));
        set_str(L, "manufacturer", sp_get_port_usb_manufacturer(sp));
        set_str(L, "product", sp_get_port_usb_product(sp));
    }
}

int local_list(lua_State *L)
{
    struct sp_port **list = NULL;
    lua_newtable(L);
    if (sp_list_ports(&list) != SP_OK || list == NULL)
        return 1; /* no ports is an answer, not an error */
    for (int i = 0; list[i]; i++) {
        push_port_info(L, list[i]);
        lua_rawseti(L, -2, i + 1);
    }
    sp_free_port_list(list);
    return 1;
}

static void raise_busy(lua_State *L, const char *path)
{
    mpctl_raise(L, "busy", path, "serial %s: port is busy (in use by another program, or already open in this one)",
                path);
}

static void raise_open_error(lua_State *L, const char *path, int err)
{
    if (err == EBUSY)
        raise_busy(L, path);
    if (err == EACCES)
        mpctl_raise(L, "access", path, "serial %s: permission denied (is the user in the dialout group?)", path);
    mpctl_raise(L, mpctl_errno_kind(err), path, "serial %s: open: %s", path, strerror(err));
}

static int probe_signals(int fd)
{
    int bits;
    return ioctl(fd, TIOCMGET, &bits) == 0;
}

/* A tty libserialport does not know (a pty): raw 8N1 with termios ourselves. */
static int open_plain_tty(lua_State *L, const char *path)
{
    int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        raise_open_error(L, path, errno);
    struct termios t;
    if (!isatty(fd) || tcgetattr(fd, &t) != 0) {
        close(fd);
        mpctl_raise(L, "unsupported", path, "serial %s: not a serial port (no tty)", path);
    }
    cfmakeraw(&t);
    t.c_cflag |= CLOCAL | CREAD;
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    cfsetspeed(&t, B115200);
    tcsetattr(fd, TCSANOW, &t);
    return fd;
}

static int open_with_libserialport(lua_State *L, struct local_port *lp, const char *path)
{
    struct sp_port *sp;
    if (sp_get_port_by_name(path, &sp) != SP_OK)
        return -1;
    if (sp_open(sp, SP_MODE_READ_WRITE) != SP_OK) {
        int err = sp_last_error_code();
        sp_free_port(sp);
        if (err == ENOTTY)
            return -1; /* a pty under a device name (umockdev's simulated /dev/ttyACM0): plain tty */
        raise_open_error(L, path, err);
    }
    int fd = -1;
    sp_get_port_handle(sp, &fd);
    lp->sp = sp;
    /* 8N1, no flow control: what every MicroPython board and ESP ROM speaks */
    sp_set_bits(sp, 8);
    sp_set_parity(sp, SP_PARITY_NONE);
    sp_set_stopbits(sp, 1);
    sp_set_flowcontrol(sp, SP_FLOWCONTROL_NONE);
    return fd;
}

void local_open(lua_State *L, struct port *p, const char *path, int exclusive)
{
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT) {
        local_push_present(L);
        mpctl_raise(L, "not_found", path, "serial: no such port %s; %s", path, lua_tostring(L, -1));
    }
    struct local_port *lp = calloc(1, sizeof *lp);
    if (lp == NULL)
        abort();
    port_set_backend(p, &port_local_ops, lp, "local");
    int fd = open_with_libserialport(L, lp, path);
    if (fd < 0)
        fd = open_plain_tty(L, path);
    p->fd = fd;
    if (exclusive) {
        /* TIOCEXCL stops other opens (except root's); flock covers root and our own ports. */
        ioctl(fd, TIOCEXCL);
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int err = errno;
            port_release(p);
            if (err == EWOULDBLOCK)
                raise_busy(L, path);
            mpctl_raise(L, mpctl_errno_kind(err), path, "serial %s: lock: %s", path, strerror(err));
        }
        lp->exclusive = 1;
    }
    port_set_nonblock(fd);
    lp->signals = probe_signals(fd);
    if (lp->sp == NULL && !lp->signals)
        p->label = "pty"; /* a tty without modem lines: in practice a pseudo-terminal */
}

static speed_t speed_constant(long baud)
{
    static const struct {
        long baud;
        speed_t speed;
    } table[] = {
        {1200, B1200},       {2400, B2400},       {4800, B4800},       {9600, B9600},
        {19200, B19200},     {38400, B38400},     {57600, B57600},     {115200, B115200},
        {230400, B230400},   {460800, B460800},   {500000, B500000},   {576000, B576000},
        {921600, B921600},   {1000000, B1000000}, {1500000, B1500000}, {2000000, B2000000},
        {3000000, B3000000},
    };
    for (size_t i = 0; i < sizeof table / sizeof *table; i++)
        if (table[i].baud == baud)
            return table[i].speed;
    return B0;
}

static void local_set_baud(lua_State *L, struct port *p, long baud)
{
    if (loc(p)->sp) {
        if (sp_set_baudrate(loc(p)->sp, (int)baud) != SP_OK)
            mpctl_raise(L, "unsupported", p->name, "serial %s: cannot set baud rate %d: %s", p->name, (int)baud,
                       sp_last_error_message());
    } else {
        /* A pty has no wire: a rate termios cannot name is only recorded. */
        struct termios t;
        speed_t s = speed_constant(baud);
        if (s != B0 && tcgetattr(p->fd, &t) == 0) {
            cfsetspeed(&t, s);
            tcsetattr(p->fd, TCSANOW, &t);
        }
    }
    p->baud = baud;
}

static int no_modem_lines(int err)
{
    return err == ENOTTY || err == EINVAL || err == ENOTSUP || err == EOPNOTSUPP || err == ENOSYS;
}

/* Set DTR and/or RTS (-1 = leave) with one TIOCMGET/TIOCMSET; a tty that cannot carry modem
 * lines (a pty) turns signals off instead of failing. */
static void local_set_signals(lua_State *L, struct port *p, int dtr, int rts)
{
    if (!loc(p)->signals)
        return;
    int bits;
    if (ioctl(p->fd, TIOCMGET, &bits) == 0) {
        if (dtr >= 0)
            bits = dtr ? bits | TIOCM_DTR : bits & ~TIOCM_DTR;
        if (rts >= 0)
            bits = rts ? bits | TIOCM_RTS : bits & ~TIOCM_RTS;
        if (ioctl(p->fd, TIOCMSET, &bits) == 0) {
            if (dtr >= 0)
                p->dtr = dtr;
            if (rts >= 0)
                p->rts = rts;
            return;
        }
    }
    if (no_modem_lines(errno)) {
        loc(p)->signals = 0;
        return;
    }
    mpctl_raise(L, mpctl_errno_kind(errno), p->name, "serial %s: set DTR/RTS: %s", p->name, strerror(errno));
}

static void local_send_break(lua_State *L, struct port *p, double seconds)
{
    (void)L;
    if (ioctl(p->fd, TIOCSBRK) != 0)
        return; /* a pty cannot hold a break; nothing to send it to */
    mpctl_sleep(seconds);
    ioctl(p->fd, TIOCCBRK);
}

static void local_flush_input(lua_State *L, struct port *p)
{
    (void)L;
    tcflush(p->fd, TCIFLUSH);
}

static int local_has_signals(const struct port *p)
{
    return loc(p)->signals;
}

static int local_has_baud(const struct port *p)
{
    (void)p;
    return 1;
}

static void local_release(struct port *p)
{
    struct local_port *lp = loc(p);
    if (lp == NULL)
        return;
    if (lp->exclusive && p->fd >= 0) {
        /* TIOCEXCL outlives this fd while anyone else holds the tty (a pty listener does) */
        ioctl(p->fd, TIOCNXCL);
        lp->exclusive = 0;
    }
    if (lp->sp) {
        sp_close(lp->sp);
        sp_free_port(lp->sp);
        p->fd = -1; /* closed by libserialport */
    }
    free(lp);
    p->priv = NULL;
}

/* Local ttys: libserialport (or termios for ptys), modem lines by TIOCMSET. */
const struct port_ops port_local_ops = {
    .set_baud = local_set_baud,
    .set_signals = local_set_signals,
    .send_break = local_send_break,
    .flush_input = local_flush_input,
    .has_signals = local_has_signals,
    .has_baud = local_has_baud,
    .release = local_release,
};
