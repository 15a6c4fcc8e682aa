/* mpctl.usb: USB devices through libusb-1.0 (enumeration, descriptors, control and bulk transfers).
 *
 *   usb.list([filter]) -> { info, ... }        every device (filter: vid, pid, path, serial, bus, address)
 *                                              filter.open = false: ids and path only, the device is not opened
 *                                              (opening a device another process is flashing on the simulated
 *                                              bus crashes the opener inside the umockdev preload)
 *   usb.open(filter_or_url) -> dev              exactly one match, else an error listing what is there
 *   usb.wait(filter, timeout [, gone]) -> info | nil   until a matching device appears (or is gone); filter.open
 *                                              = false as for list
 *   usb.parse_url("usb:0483:df11" | "usb:1-4.2" | "usb:serial=X") -> filter
 *   usb.tty_of(path) -> "/dev/ttyACM0" | nil  the serial port of a CDC device (by port path), from sysfs
 *   usb.ids_at(path) -> vid, pid, serial | nil  the device now at a port path, from sysfs (not libusb's
 *                                              hotplug-fed list); serial nil when the device has none
 *   dev:info()  dev:claim(i)  dev:release(i)  dev:set_alt(i, alt)  dev:clear_halt(ep)  dev:reset()
 *   dev:control(bmRequestType, bRequest, wValue, wIndex, data_or_length [, timeout_s]) -> data | count
 *   dev:bulk_out(ep, data [, timeout_s]) -> count      dev:bulk_in(ep, length [, timeout_s]) -> data
 *   dev:string(index) -> text     dev:close() (also __close / __gc)
 *
 * info = { vid, pid, bus, address, path ("1-4.2", sysfs style: bus-port.port...), speed, class,
 *          bcd_device, serial, manufacturer, product (nil when the device cannot be opened; then
 *          access = "libusb error name"), configs = { { value, interfaces = { { number, alts = {
 *          { alt, class, subclass, protocol, name, endpoints = { {address, attributes, max_packet} },
 *            extra (raw class descriptors), dfu = { attributes, detach_timeout, transfer_size,
 *            version } } } } } } } }
 *
 * One libusb context per Lua state, kept in the registry and released with the state. Runtime
 * failures raise mpctl.errors objects (Contract 1: kind, where, detail, hint) with the advice a
 * Linux user needs: a udev rule for "permission denied", the driver or program for "busy".
 * Long transfers run in slices of SLICE_MS and stop when a signal is due (core's interrupt
 * helpers), raising `interrupted`; waits sleep through mpctl_sleep_l.
 */
#include "mpctl.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libusb.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define CTX_KEY "mpctl.usb.context"
#define DEV_MT "mpctl.usb.device"
#define SLICE_MS 250
#define DEFAULT_TIMEOUT 5.0
#define MAX_PATH_TEXT 48

struct usb_ctx {
    libusb_context *ctx;
};

struct usb_dev {
    libusb_device_handle *h;
    libusb_device *dev;
    unsigned claimed; /* bit per interface number < 32 */
    char where[MAX_PATH_TEXT + 16];
};

/* ---- errors --------------------------------------------------------------------------------- */

/* Raises a structured error (Contract 1, src/common.c) with a hint. Never returns. */
static int usb_raise(lua_State *L, const char *kind, const char *where, const char *hint, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    mpctl_push_error(L, kind, where, detail);
    if (hint) {
        lua_pushstring(L, hint);
        lua_setfield(L, -2, "hint");
        /* the readable text carries the advice too */
        lua_pushfstring(L, "%s: %s; %s", where, detail, hint);
        lua_setfield(L, -2, "msg");
    }
    return lua_error(L);
}

static const char *kind_of(int rc)
{
    switch (rc) {
    case LIBUSB_ERROR_TIMEOUT: return "timeout";
    case LIBUSB_ERROR_ACCESS: return "access";
    case LIBUSB_ERROR_BUSY: return "busy";
    case LIBUSB_ERROR_NO_DEVICE:
    case LIBUSB_ERROR_NOT_FOUND: return "not_found";
    case LIBUSB_ERROR_PIPE:
    case LIBUSB_ERROR_OVERFLOW: return "protocol";
    case LIBUSB_ERROR_INTERRUPTED: return "interrupted";
    case LIBUSB_ERROR_NOT_SUPPORTED: return "unsupported";
    default: return "io";
    }
}

/* The udev rule that gives the logged-in user the device (systemd's uaccess tag). */
static void access_hint(char *out, size_t n, libusb_device *dev)
{
    struct libusb_device_descriptor d;
    if (dev && libusb_get_device_descriptor(dev, &d) == 0)
        snprintf(out, n,
                 "permission denied by the OS: add a udev rule, e.g. echo 'SUBSYSTEM==\"usb\", "
                 "ATTR{idVendor}==\"%04x\", ATTR{idProduct}==\"%04x\", MODE=\"0660\", TAG+=\"uaccess\"' | "
                 "sudo tee /etc/udev/rules.d/49-mpctl.rules; sudo udevadm control --reload; "
                 "sudo udevadm trigger; then unplug and replug the board",
                 d.idVendor, d.idProduct);
    else
        snprintf(out, n, "permission denied by the OS: add a udev rule for the device (see README, USB access)");
}

/* Which processes hold /dev/bus/usb/BBB/DDD open (scans /proc/<pid>/fd; best effort). */
static void holders(char *out, size_t n, int bus, int addr)
{
    char node[64];
    snprintf(node, sizeof node, "/dev/bus/usb/%03d/%03d", bus, addr);
    size_t used = 0;
    out[0] = '\0';
    DIR *proc = opendir("/proc");
    if (!proc)
        return;
    struct dirent *pe;
    pid_t self = getpid();
    while ((pe = readdir(proc)) && used + 64 < n) {
        if (!isdigit((unsigned char)pe->d_name[0]) || atoi(pe->d_name) == self)
            continue;
        char fddir[300];
        snprintf(fddir, sizeof fddir, "/proc/%s/fd", pe->d_name);
        DIR *fds = opendir(fddir);
        if (!fds)
            continue;
        struct dirent *fe;
        while ((fe = readdir(fds))) {
            char link[600], target[PATH_MAX];
            snprintf(link, sizeof link, "%s/%s", fddir, fe->d_name);
            ssize_t len = readlink(link, target, sizeof target - 1);
            if (len <= 0)
                continue;
            target[len] = '\0';
            if (strcmp(target, node) != 0)
                continue;
            char comm[64] = "?", commpath[300];
            snprintf(commpath, sizeof commpath, "/proc/%s/comm", pe->d_name);
            FILE *f = fopen(commpath, "r");
            if (f) {
                if (fgets(comm, sizeof comm, f))
                    comm[strcspn(comm, "\n")] = '\0';
                fclose(f);
            }
            used += (size_t)snprintf(out + used, n - used, "%s%s (pid %s)", used ? ", " : "", comm, pe->d_name);
            break;
        }
        closedir(fds);
    }
    closedir(proc);
}

static void busy_hint(char *out, size_t n, struct usb_dev *d, int iface)
{
    char who[256] = "";
    if (d->dev)
        holders(who, sizeof who, libusb_get_bus_number(d->dev), libusb_get_device_address(d->dev));
    if (who[0]) {
        snprintf(out, n, "another program holds the device: %s; close it (or stop the service) and retry", who);
        return;
    }
    if (d->h && iface >= 0 && libusb_kernel_driver_active(d->h, iface) == 1) {
        char drv[300] = "a kernel driver", link[200], target[256];
        snprintf(link, sizeof link, "/sys/bus/usb/devices/%s:1.%d/driver", d->where, iface);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len > 0) {
            target[len] = '\0';
            const char *base = strrchr(target, '/');
            snprintf(drv, sizeof drv, "the kernel driver '%.200s'", base ? base + 1 : target);
        }
        snprintf(out, n, "interface %d is bound to %s; unbind it or stop what uses it (ModemManager, a serial "
                 "terminal) and retry", iface, drv);
        return;
    }
    snprintf(out, n, "another program or driver has claimed the interface; close other flashing tools "
             "(dfu-util, STM32CubeProgrammer, a serial terminal) and retry");
}

/* Raises for a libusb failure on an open device, with the advice that fits the error. */
static int dev_fail(lua_State *L, struct usb_dev *d, int rc, int iface, const char *fmt, ...)
{
    char what[256], hint[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const char *h = NULL;
    if (rc == LIBUSB_ERROR_ACCESS) {
        access_hint(hint, sizeof hint, d->dev);
        h = hint;
    } else if (rc == LIBUSB_ERROR_BUSY) {
        busy_hint(hint, sizeof hint, d, iface);
        h = hint;
    } else if (rc == LIBUSB_ERROR_NO_DEVICE) {
        h = "the device went away (unplugged or reset); plug it in again and rerun the command";
    } else if (rc == LIBUSB_ERROR_PIPE) {
        h = "the device refused the request (endpoint stall)";
    }
    char where[MAX_PATH_TEXT + 24];
    snprintf(where, sizeof where, "usb:%s", d->where);
    return usb_raise(L, kind_of(rc), where, h, "%s: %s", what, libusb_error_name(rc));
}

/* ---- context -------------------------------------------------------------------------------- */

static int ctx_gc(lua_State *L)
{
    struct usb_ctx *c = luaL_checkudata(L, 1, CTX_KEY);
    if (c->ctx) {
        libusb_exit(c->ctx);
        c->ctx = NULL;
    }
    return 0;
}

/* Under umockdev (the simulated bus: UMOCKDEV_DIR set) a process's uevent socket is a Unix socket
 * named $UMOCKDEV_DIR/event<fd>, after its descriptor number, and its bind() unlinks that name
 * first (umockdev 0.17, libumockdev-preload.c netlink_bind). Processes of one program on one bus
 * (the children of `mpctl --port A --port B`) reach libusb_init with the same lowest free fd, so a
 * later one unlinks an earlier one's socket: that process hears no more hotplug events (its
 * board's new device never shows in libusb's list), and when two binds interleave, libusb_init
 * fails with LIBUSB_ERROR_OTHER. Holding every free descriptor below a number taken from the pid
 * while libusb opens its sockets gives each process its own name (two pids equal modulo the range
 * can still meet: then the failed init is tried again with another number). Nothing of this runs
 * on a real bus. */
struct fd_hold {
    int fds[1024];
    int n;
};

static void hold_low_fds(struct fd_hold *h, int attempt)
{
    h->n = 0;
    struct rlimit rl;
    if (!getenv("UMOCKDEV_DIR") || getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < 256)
        return;
    long room = (rl.rlim_cur > 1024 ? 1024 : (long)rl.rlim_cur) - 160;
    int below = 32 + (int)(((long)getpid() + 97L * attempt) % room);
    int base = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (base < 0)
        return;
    h->fds[h->n++] = base;
    while (h->n < (int)(sizeof h->fds / sizeof h->fds[0])) {
        int fd = fcntl(base, F_DUPFD_CLOEXEC, 0); /* the lowest free number */
        if (fd < 0)
            break;
        if (fd >= below) {
            close(fd);
            break;
        }
        h->fds[h->n++] = fd;
    }
}

static void release_fds(struct fd_hold *h)
{
    for (int i = 0; i < h->n; i++)
        close(h->fds[i]);
    h->n = 0;
}

/* The state's context (created on first use); pushes nothing. */
static libusb_context *get_ctx(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, CTX_KEY);
    if (lua_isuserdata(L, -1)) {
        struct usb_ctx *c = lua_touserdata(L, -1);
        lua_pop(L, 1);
        return c->ctx;
    }
    lua_pop(L, 1);
    struct usb_ctx *c = lua_newuserdatauv(L, sizeof *c, 0);
    c->ctx = NULL;
    if (luaL_newmetatable(L, CTX_KEY)) {
        lua_pushcfunction(L, ctx_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    struct fd_hold *hold = malloc(sizeof *hold);
    int rc = LIBUSB_ERROR_OTHER;
    for (int attempt = 0; attempt < 3; attempt++) {
        if (hold)
            hold_low_fds(hold, attempt);
        rc = libusb_init(&c->ctx);
        if (hold)
            release_fds(hold);
        if (rc != LIBUSB_ERROR_OTHER || !getenv("UMOCKDEV_DIR"))
            break;
    }
    free(hold);
    if (rc != 0) {
        c->ctx = NULL;
        lua_pop(L, 1);
        usb_raise(L, "io", "usb", "check that /dev/bus/usb exists (no USB bus in a container?)",
                  "libusb_init failed: %s", libusb_error_name(rc));
    }
    lua_setfield(L, LUA_REGISTRYINDEX, CTX_KEY);
    return c->ctx;
}

/* ---- descriptors ---------------------------------------------------------------------------- */

/* sysfs-style port path: "1-4.2" (bus 1, port 4, then port 2 of the hub there); root hub: "1-0". */
static void port_path(libusb_device *dev, char *out, size_t n)
{
    uint8_t ports[8];
    int np = libusb_get_port_numbers(dev, ports, sizeof ports);
    int used = snprintf(out, n, "%d-", libusb_get_bus_number(dev));
    if (np <= 0) {
        snprintf(out + used, n - (size_t)used, "0");
        return;
    }
    for (int i = 0; i < np && (size_t)used < n; i++)
        used += snprintf(out + used, n - (size_t)used, i ? ".%d" : "%d", ports[i]);
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

/* Sets field k to string descriptor idx (nothing when idx is 0, there is no handle, or it fails). */
static void set_string(lua_State *L, libusb_device_handle *h, const char *k, uint8_t idx)
{
    if (!h || !idx)
        return;
    unsigned char buf[256];
    int n = libusb_get_string_descriptor_ascii(h, idx, buf, sizeof buf);
    if (n < 0)
        return;
    lua_pushlstring(L, (const char *)buf, (size_t)n);
    lua_setfield(L, -2, k);
}

/* The DFU functional descriptor (USB DFU 1.1 §4.1.3: bLength 9, type 0x21, bmAttributes,
 * wDetachTimeOut, wTransferSize, bcdDFUVersion) if it is in `extra`: pushes a table or nothing. */
static int push_dfu_functional(lua_State *L, const unsigned char *extra, int len)
{
    for (int i = 0; i + 2 <= len && extra[i] >= 2; i += extra[i]) {
        if (extra[i + 1] != 0x21 || extra[i] < 7 || i + extra[i] > len)
            continue;
        const unsigned char *p = extra + i;
        lua_createtable(L, 0, 4);
        set_int(L, "attributes", p[2]);
        set_int(L, "detach_timeout", p[3] | (p[4] << 8));
        set_int(L, "transfer_size", p[5] | (p[6] << 8));
        set_int(L, "version", p[0] >= 9 ? (p[7] | (p[8] << 8)) : 0x0100);
        return 1;
    }
    return 0;
}

static void push_alt(lua_State *L, libusb_device_handle *h, const struct libusb_interface_descriptor *a,
                     const struct libusb_config_descriptor *cfg)
{
    lua_createtable(L, 0, 9);
    set_int(L, "number", a->bInterfaceNumber);
    set_int(L, "alt", a->bAlternateSetting);
    set_int(L, "class", a->bInterfaceClass);
    set_int(L, "subclass", a->bInterfaceSubClass);
    set_int(L, "protocol", a->bInterfaceProtocol);
    set_string(L, h, "name", a->iInterface);
    lua_createtable(L, a->bNumEndpoints, 0);
    for (int e = 0; e < a->bNumEndpoints; e++) {
        const struct libusb_endpoint_descriptor *ep = &a->endpoint[e];
        lua_createtable(L, 0, 3);
        set_int(L, "address", ep->bEndpointAddress);
        set_int(L, "attributes", ep->bmAttributes);
        set_int(L, "max_packet", ep->wMaxPacketSize);
        lua_rawseti(L, -2, e + 1);
    }
    lua_setfield(L, -2, "endpoints");
    if (a->extra_length > 0) {
        lua_pushlstring(L, (const char *)a->extra, (size_t)a->extra_length);
        lua_setfield(L, -2, "extra");
    }
    /* DFU interface (class 0xFE, subclass 1): the functional descriptor follows the interface,
     * but some devices hang it off the configuration instead (pydfu checks both). */
    if (a->bInterfaceClass == 0xFE && a->bInterfaceSubClass == 0x01 &&
        (push_dfu_functional(L, a->extra, a->extra_length) ||
         push_dfu_functional(L, cfg->extra, cfg->extra_length)))
        lua_setfield(L, -2, "dfu");
}

static void push_configs(lua_State *L, libusb_device *dev, libusb_device_handle *h, int nconf)
{
    lua_createtable(L, nconf, 0);
    for (int c = 0; c < nconf; c++) {
        struct libusb_config_descriptor *cfg;
        if (libusb_get_config_descriptor(dev, (uint8_t)c, &cfg) != 0)
            continue;
        lua_createtable(L, 0, 3);
        set_int(L, "value", cfg->bConfigurationValue);
        set_string(L, h, "name", cfg->iConfiguration);
        lua_createtable(L, cfg->bNumInterfaces, 0);
        for (int i = 0; i < cfg->bNumInterfaces; i++) {
            const struct libusb_interface *it = &cfg->interface[i];
            lua_createtable(L, 0, 2);
            set_int(L, "number", it->num_altsetting > 0 ? it->altsetting[0].bInterfaceNumber : i);
            lua_createtable(L, it->num_altsetting, 0);
            for (int a = 0; a < it->num_altsetting; a++) {
                push_alt(L, h, &it->altsetting[a], cfg);
                lua_rawseti(L, -2, a + 1);
            }
            lua_setfield(L, -2, "alts");
            lua_rawseti(L, -2, i + 1);
        }
        lua_setfield(L, -2, "interfaces");
        libusb_free_config_descriptor(cfg);
        lua_rawseti(L, -2, c + 1);
    }
    lua_setfield(L, -2, "configs");
}

static const char *speed_name(int s)
{
    switch (s) {
    case LIBUSB_SPEED_LOW: return "low";
    case LIBUSB_SPEED_FULL: return "full";
    case LIBUSB_SPEED_HIGH: return "high";
    case LIBUSB_SPEED_SUPER: return "super";
    case LIBUSB_SPEED_SUPER_PLUS: return "super+";
    default: return "unknown";
    }
}

/* Pushes the info table of dev. With h == NULL the device is opened briefly for its strings. */
static void push_info_opt(lua_State *L, libusb_device *dev, libusb_device_handle *h, int open_it);

static void push_info(lua_State *L, libusb_device *dev, libusb_device_handle *h)
{
    push_info_opt(L, dev, h, 1);
}

/* open_it = 0: ids and path only, the device is not opened (no strings, no configurations). */
static void push_info_opt(lua_State *L, libusb_device *dev, libusb_device_handle *h, int open_it)
{
    struct libusb_device_descriptor d;
    int rc = libusb_get_device_descriptor(dev, &d);
    lua_createtable(L, 0, 16);
    char path[MAX_PATH_TEXT];
    port_path(dev, path, sizeof path);
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
    set_int(L, "bus", libusb_get_bus_number(dev));
    set_int(L, "address", libusb_get_device_address(dev));
    lua_pushstring(L, speed_name(libusb_get_device_speed(dev)));
    lua_setfield(L, -2, "speed");
    if (rc != 0)
        return;
    set_int(L, "vid", d.idVendor);
    set_int(L, "pid", d.idProduct);
    set_int(L, "class", d.bDeviceClass);
    set_int(L, "bcd_device", d.bcdDevice);
    set_int(L, "max_packet0", d.bMaxPacketSize0);
    if (!open_it && !h)
        return;
    libusb_device_handle *own = NULL;
    if (!h) {
        int orc = libusb_open(dev, &own);
        if (orc != 0) {
            own = NULL;
            lua_pushstring(L, libusb_error_name(orc));
            lua_setfield(L, -2, "access");
        }
        h = own;
    }
    set_string(L, h, "manufacturer", d.iManufacturer);
    set_string(L, h, "product", d.iProduct);
    set_string(L, h, "serial", d.iSerialNumber);
    push_configs(L, dev, h, d.bNumConfigurations);
    if (own)
        libusb_close(own);
}

/* ---- filters -------------------------------------------------------------------------------- */

struct filter {
    int vid, pid, bus, address; /* -1 = any */
    const char *path, *serial;
};

static int opt_int(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    int v = lua_isnil(L, -1) ? -1 : (int)luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    return v;
}

/* Reads a filter table at index t; the strings stay valid while the table is on the stack. */
static void read_filter(lua_State *L, int t, struct filter *f)
{
    memset(f, 0, sizeof *f);
    f->vid = f->pid = f->bus = f->address = -1;
    if (lua_isnoneornil(L, t))
        return;
    luaL_checktype(L, t, LUA_TTABLE);
    f->vid = opt_int(L, t, "vid");
    f->pid = opt_int(L, t, "pid");
    f->bus = opt_int(L, t, "bus");
    f->address = opt_int(L, t, "address");
    lua_getfield(L, t, "path");
    f->path = lua_tostring(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, t, "serial");
    f->serial = lua_tostring(L, -1);
    lua_pop(L, 1);
}

/* Matches everything but the serial (that needs the device opened). */
static int match_ids(libusb_device *dev, const struct filter *f)
{
    struct libusb_device_descriptor d;
    if (libusb_get_device_descriptor(dev, &d) != 0)
        return 0;
    if (f->vid >= 0 && d.idVendor != f->vid)
        return 0;
    if (f->pid >= 0 && d.idProduct != f->pid)
        return 0;
    if (f->bus >= 0 && libusb_get_bus_number(dev) != f->bus)
        return 0;
    if (f->address >= 0 && libusb_get_device_address(dev) != f->address)
        return 0;
    if (f->path) {
        char path[MAX_PATH_TEXT];
        port_path(dev, path, sizeof path);
        if (strcmp(path, f->path) != 0)
            return 0;
    }
    return 1;
}

static int match_serial(libusb_device *dev, const struct filter *f)
{
    if (!f->serial)
        return 1;
    struct libusb_device_descriptor d;
    libusb_device_handle *h;
    if (libusb_get_device_descriptor(dev, &d) != 0 || !d.iSerialNumber || libusb_open(dev, &h) != 0)
        return 0;
    unsigned char buf[256];
    int n = libusb_get_string_descriptor_ascii(h, d.iSerialNumber, buf, sizeof buf);
    libusb_close(h);
    return n >= 0 && (size_t)n == strlen(f->serial) && memcmp(buf, f->serial, (size_t)n) == 0;
}

/* The device is still in sysfs with the same device number. libusb drops an unplugged device
 * from its list when the udev "remove" event arrives; where that event is late or not handled
 * (umockdev's simulated bus leaves the stale entry), sysfs says whether the device is gone. */
static int still_present(libusb_device *dev)
{
    char path[MAX_PATH_TEXT], file[MAX_PATH_TEXT + 40];
    port_path(dev, path, sizeof path);
    size_t pl = strlen(path);
    if (pl >= 2 && strcmp(path + pl - 2, "-0") == 0) /* a root hub is usbN in sysfs */
        snprintf(file, sizeof file, "/sys/bus/usb/devices/usb%d/devnum", libusb_get_bus_number(dev));
    else
        snprintf(file, sizeof file, "/sys/bus/usb/devices/%s/devnum", path);
    FILE *f = fopen(file, "r");
    if (!f)
        return errno != ENOENT;
    int devnum = -1;
    int n = fscanf(f, "%d", &devnum);
    fclose(f);
    return n != 1 || devnum == libusb_get_device_address(dev);
}

static int matches(libusb_device *dev, const struct filter *f)
{
    return still_present(dev) && match_ids(dev, f) && match_serial(dev, f);
}

static void describe_filter(const struct filter *f, char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    if (f->vid >= 0 || f->pid >= 0)
        used += (size_t)snprintf(out + used, n - used, "%04x:%04x ", f->vid < 0 ? 0 : f->vid, f->pid < 0 ? 0 : f->pid);
    if (f->path && used < n)
        used += (size_t)snprintf(out + used, n - used, "path %s ", f->path);
    if (f->serial && used < n)
        used += (size_t)snprintf(out + used, n - used, "serial %s ", f->serial);
    if (f->bus >= 0 && used < n)
        used += (size_t)snprintf(out + used, n - used, "bus %d ", f->bus);
    if (f->address >= 0 && used < n)
        used += (size_t)snprintf(out + used, n - used, "device %d ", f->address);
    if (used == 0)
        snprintf(out, n, "any device");
    else if (used <= n)
        out[used - 1] = '\0';
}

/* One line per device: "1-4.2 0483:df11" (for error messages listing what is there). */
static void list_line(libusb_device *dev, char *out, size_t n)
{
    struct libusb_device_descriptor d;
    char path[MAX_PATH_TEXT];
    port_path(dev, path, sizeof path);
    if (libusb_get_device_descriptor(dev, &d) == 0)
        snprintf(out, n, "usb:%s (%04x:%04x)", path, d.idVendor, d.idProduct);
    else
        snprintf(out, n, "usb:%s", path);
}

/* ---- module functions ----------------------------------------------------------------------- */

static int u_list(lua_State *L)
{
    struct filter f;
    read_filter(L, 1, &f);
    libusb_context *ctx = get_ctx(L);
    libusb_device **devs;
    ssize_t n = libusb_get_device_list(ctx, &devs);
    if (n < 0)
        return usb_raise(L, kind_of((int)n), "usb", NULL, "listing devices: %s", libusb_error_name((int)n));
    int open_it = 1;
    if (lua_istable(L, 1)) {
        lua_getfield(L, 1, "open");
        open_it = lua_isnil(L, -1) || lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    lua_createtable(L, (int)n, 0);
    int k = 0;
    for (ssize_t i = 0; i < n; i++) {
        if (!matches(devs[i], &f))
            continue;
        push_info_opt(L, devs[i], NULL, open_it);
        lua_rawseti(L, -2, ++k);
    }
    libusb_free_device_list(devs, 1);
    return 1;
}

/* Finds the one device matching f: *found = count; returns a referenced device when count is 1. */
static libusb_device *find_one(lua_State *L, const struct filter *f, int *found, char *others, size_t n)
{
    libusb_device **devs;
    ssize_t cnt = libusb_get_device_list(get_ctx(L), &devs);
    if (cnt < 0)
        usb_raise(L, kind_of((int)cnt), "usb", NULL, "listing devices: %s", libusb_error_name((int)cnt));
    libusb_device *hit = NULL;
    size_t used = 0;
    others[0] = '\0';
    *found = 0;
    for (ssize_t i = 0; i < cnt; i++) {
        char line[96];
        list_line(devs[i], line, sizeof line);
        if (!matches(devs[i], f)) {
            if (used + 100 < n && (f->vid < 0 || match_ids(devs[i], &(struct filter){.vid = f->vid, .pid = -1, .bus = -1, .address = -1})))
                used += (size_t)snprintf(others + used, n - used, "%s%s", used ? ", " : "", line);
            continue;
        }
        (*found)++;
        if (!hit)
            hit = libusb_ref_device(devs[i]);
        if (used + 100 < n)
            used += (size_t)snprintf(others + used, n - used, "%s%s", used ? ", " : "", line);
    }
    libusb_free_device_list(devs, 1);
    if (*found != 1 && hit) {
        libusb_unref_device(hit);
        hit = NULL;
    }
    return hit;
}

/* usb.open(filter): exactly one device, opened. */
static int u_open(lua_State *L)
{
    struct filter f;
    read_filter(L, 1, &f);
    char want[160], seen[1024];
    describe_filter(&f, want, sizeof want);
    int found;
    libusb_device *dev = find_one(L, &f, &found, seen, sizeof seen);
    if (found == 0)
        return usb_raise(L, "not_found", "usb", seen[0] ? NULL : "check the cable and that the board is in the mode you expect; `mpctl ports` lists what is connected",
                         "no USB device matches %s%s%s", want, seen[0] ? "; present: " : "", seen);
    if (found > 1)
        return usb_raise(L, "usage", "usb", "name one with --port usb:BUS-PATH or usb:serial=SERIAL",
                         "%d USB devices match %s (%s), not guessing which", found, want, seen);
    struct usb_dev *d = lua_newuserdatauv(L, sizeof *d, 1);
    memset(d, 0, sizeof *d);
    luaL_setmetatable(L, DEV_MT);
    lua_getfield(L, LUA_REGISTRYINDEX, CTX_KEY); /* keep the context alive as long as the handle */
    lua_setiuservalue(L, -2, 1);
    d->dev = dev;
    port_path(dev, d->where, sizeof d->where);
    int rc = libusb_open(dev, &d->h);
    if (rc != 0) {
        d->h = NULL;
        return dev_fail(L, d, rc, -1, "cannot open %s", want);
    }
    libusb_set_auto_detach_kernel_driver(d->h, 1);
    return 1;
}

/* usb.wait(filter, timeout_s [, gone]): polls the device list, which libusb keeps current from
 * udev hotplug events (libusb_has_capability(LIBUSB_CAP_HAS_HOTPLUG) on Linux), every 20 ms. */
static int u_wait(lua_State *L)
{
    struct filter f;
    read_filter(L, 1, &f);
    double timeout = luaL_checknumber(L, 2);
    int gone = lua_toboolean(L, 3);
    int open_it = 1;
    if (lua_istable(L, 1)) {
        lua_getfield(L, 1, "open");
        open_it = lua_isnil(L, -1) || lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    double deadline = mpctl_now() + timeout;
    libusb_context *ctx = get_ctx(L);
    for (;;) {
        struct timeval tv = {0, 0};
        libusb_handle_events_timeout_completed(ctx, &tv, NULL);
        libusb_device **devs;
        ssize_t n = libusb_get_device_list(ctx, &devs);
        libusb_device *hit = NULL;
        for (ssize_t i = 0; i < n && !hit; i++)
            if (matches(devs[i], &f))
                hit = devs[i];
        if (hit && !gone) {
            push_info_opt(L, hit, NULL, open_it);
            libusb_free_device_list(devs, 1);
            return 1;
        }
        if (n >= 0)
            libusb_free_device_list(devs, 1);
        if (!hit && gone) {
            lua_pushboolean(L, 1);
            return 1;
        }
        if (mpctl_now() >= deadline)
            break;
        mpctl_sleep_l(L, 0.02); /* raises `interrupted` on Ctrl-C */
    }
    luaL_pushfail(L);
    return 1;
}

/* usb.parse_url: "usb:VID:PID", "usb:BUS-PATH" (1-4.2), "usb:serial=X" -> filter table. */
static int u_parse_url(lua_State *L)
{
    const char *url = luaL_checkstring(L, 1);
    const char *s = strncmp(url, "usb:", 4) == 0 ? url + 4 : url;
    unsigned vid, pid;
    char tail;
    lua_createtable(L, 0, 2);
    if (strncmp(s, "serial=", 7) == 0 && s[7]) {
        lua_pushstring(L, s + 7);
        lua_setfield(L, -2, "serial");
    } else if (sscanf(s, "%4x:%4x%c", &vid, &pid, &tail) == 2) {
        set_int(L, "vid", vid);
        set_int(L, "pid", pid);
    } else if (isdigit((unsigned char)s[0]) && strchr(s, '-') && strspn(s, "0123456789-.") == strlen(s)) {
        lua_pushstring(L, s);
        lua_setfield(L, -2, "path");
    } else {
        return usb_raise(L, "usage", url, NULL,
                         "not a USB port: use usb:VID:PID (usb:0483:df11), usb:BUS-PATH (usb:1-4.2) or usb:serial=SERIAL");
    }
    return 1;
}

/* ---- device handle -------------------------------------------------------------------------- */

static struct usb_dev *check_dev(lua_State *L)
{
    struct usb_dev *d = luaL_checkudata(L, 1, DEV_MT);
    if (!d->h)
        usb_raise(L, "usage", d->where[0] ? d->where : "usb", NULL, "the USB device is closed");
    return d;
}

static unsigned timeout_ms(lua_State *L, int idx)
{
    double t = luaL_optnumber(L, idx, DEFAULT_TIMEOUT);
    if (!(t > 0))
        return 1;
    return t > 3600 ? 3600000u : (unsigned)(t * 1000.0);
}

static int d_close(lua_State *L)
{
    struct usb_dev *d = luaL_checkudata(L, 1, DEV_MT);
    if (d->h) {
        for (int i = 0; i < 32; i++)
            if (d->claimed & (1u << i))
                libusb_release_interface(d->h, i);
        d->claimed = 0;
        libusb_close(d->h);
        d->h = NULL;
    }
    if (d->dev) {
        libusb_unref_device(d->dev);
        d->dev = NULL;
    }
    return 0;
}

static int d_info(lua_State *L)
{
    struct usb_dev *d = check_dev(L);
    push_info(L, d->dev, d->h);
    return 1;
}

static int d_claim(lua_State *L)
{
    struct usb_dev *d = check_dev(L);
    int i = (int)luaL_checkinteger(L, 2);
    luaL_argcheck(L, i >= 0 && i < 32, 2, "interface number 0..31");
    int rc = libusb_claim_interface(d->h, i);
    if (rc != 0)
        return dev_fail(L, d, rc, i, "claiming interface %d", i);
    d->claimed |= 1u << i;
    return 0;
}

static int d_release(lua_State *L)
{
    struct usb_dev *d = check_dev(L);
    int i = (int)luaL_checkinteger(L, 2);
    luaL_argcheck(L, i >= 0 && i < 32, 2, "interface number 0..31");
    int rc = libusb_release_interface(d->h, i);
    d->claimed &= ~(1u << i);
    if (rc != 0 && rc != LIBUSB_ERROR_NO_DEVICE && rc != LIBUSB_ERROR_NOT_FOUND)
        return dev_fail(L, d, rc, i, "releasing interface %d", i);
    return 0;
}

static int d_set_alt(lua_State *L)
{
    struct usb_dev *d = check_dev(L);
    int i = (int)luaL_checkinteger(L, 2), alt = (int)luaL_checkinteger(L, 3);
    int rc = libusb_set_interface_alt_setting(d->h, i, alt);
    if (rc != 0)
        return dev_fail(L, d, rc, i, "selecting alt setting %d of interface %d", alt, i);
    return 0;
}

static int d_clear_halt(lua_State *L)
{
    struct usb_dev *d = check_dev(L);
    int ep = (int)luaL_checkinteger(L, 2);
    int rc = libusb_clear_halt(d->h, (unsigned char)ep);
    if (rc != 0)
        return dev_fail(L, d, rc, -1, "clearing the halt on endpoint 0x%02x", ep);
    return 0;
}

/* dev:reset(): a port reset. The device may re-enumerate (NOT_FOUND): then the handle is closed
 * and reset returns false; true when the handle stays valid. */
static int d_reset(lua_State *L)
{
    struct usb_dev *d = check_dev(L);
    int rc = libusb_reset_device(d->h);
    if (rc == LIBUSB_ERROR_NOT_FOUND || rc == LIBUSB_ERROR_NO_DEVICE) {
        d_close(L);
        lua_pushboolean(L, 0);
        return 1;
    }
    if (rc != 0)
        return dev_fail(L, d, rc, -1, "port reset");
    lua_pushboolean(L, 1);
    return 1;
}

static int d_control(lua_State *L)
{
    struct usb_dev *d = check_dev(L);
    int rt = (int)luaL_checkinteger(L, 2), req = (int)luaL_checkinteger(L, 3);
    int value = (int)luaL_checkinteger(L, 4), index = (int)luaL_checkinteger(L, 5);
    unsigned tmo = timeout_ms(L, 7);
    if (rt & LIBUSB_ENDPOINT_IN) {
        lua_Integer len = luaL_checkinteger(L, 6);
        luaL_argcheck(L, len >= 0 && len <= 65535, 6, "length 0..65535");
        luaL_Buffer b;
        unsigned char *buf = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)len + 1);
        int n = libusb_control_transfer(d->h, (uint8_t)rt, (uint8_t)req, (uint16_t)value, (uint16_t)index, buf,
                                        (uint16_t)len, tmo);
        if (n < 0)
            return dev_fail(L, d, n, -1, "control IN request 0x%02x (value 0x%04x, index %d)", req, value, index);
        luaL_pushresultsize(&b, (size_t)n);
        return 1;
    }
    size_t len = 0;
    const char *data = lua_isnoneornil(L, 6) ? "" : luaL_checklstring(L, 6, &len);
    luaL_argcheck(L, len <= 65535, 6, "at most 65535 bytes");
    int n = libusb_control_transfer(d->h, (uint8_t)rt, (uint8_t)req, (uint16_t)value, (uint16_t)index,
                                    (unsigned char *)data, (uint16_t)len, tmo);
    if (n < 0)
        return dev_fail(L, d, n, -1, "control OUT request 0x%02x (value 0x%04x, index %d, %zu bytes)", req, value,
                        index, len);
    lua_pushinteger(L, n);
    return 1;
}

/* One bulk transfer cut into slices so a signal (Ctrl-C) is seen within SLICE_MS. */
static int bulk(struct usb_dev *d, unsigned char ep, unsigned char *buf, int len, unsigned tmo, int *done)
{
    double deadline = mpctl_now() + tmo / 1000.0;
    *done = 0;
    for (;;) {
        double left = deadline - mpctl_now();
        unsigned slice = left <= 0 ? 1 : (left * 1000 < SLICE_MS ? (unsigned)(left * 1000) + 1 : SLICE_MS);
        int got = 0;
        int rc = libusb_bulk_transfer(d->h, ep, buf + *done, len - *done, &got, slice);
        *done += got;
        if (rc == 0 && (*done == len || (ep & 0x80)))
            return 0;
        if (rc != 0 && rc != LIBUSB_ERROR_TIMEOUT)
            return rc;
        if (mpctl_interrupt_due())
            return LIBUSB_ERROR_INTERRUPTED; /* the caller raises `interrupted` */
        if (mpctl_now() >= deadline)
            return LIBUSB_ERROR_TIMEOUT;
        if (rc == 0 && got == 0 && !(ep & 0x80))
            return 0; /* zero-length OUT */
    }
}

static int d_bulk_out(lua_State *L)
{
    struct usb_dev *d = check_dev(L);
    int ep = (int)luaL_checkinteger(L, 2);
    size_t len;
    const char *data = luaL_checklstring(L, 3, &len);
    luaL_argcheck(L, len <= INT_MAX, 3, "too long");
    int done;
    int rc = bulk(d, (unsigned char)(ep & 0x7f), (unsigned char *)data, (int)len, timeout_ms(L, 4), &done);
    if (rc == LIBUSB_ERROR_INTERRUPTED)
        mpctl_check_interrupt(L);
    if (rc != 0)
        return dev_fail(L, d, rc, -1, "bulk OUT on endpoint 0x%02x (%d of %zu bytes sent)", ep, done, len);
    lua_pushinteger(L, done);
    return 1;
}

static int d_bulk_in(lua_State *L)
{
    struct usb_dev *d = check_dev(L);
    int ep = (int)luaL_checkinteger(L, 2);
    lua_Integer len = luaL_checkinteger(L, 3);
    luaL_argcheck(L, len >= 0 && len <= (1 << 24), 3, "length 0..16 MiB");
    luaL_Buffer b;
    unsigned char *buf = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)len + 1);
    int done;
    int rc = bulk(d, (unsigned char)(ep | 0x80), buf, (int)len, timeout_ms(L, 4), &done);
    if (rc == LIBUSB_ERROR_INTERRUPTED)
        mpctl_check_interrupt(L);
    if (rc != 0)
        return dev_fail(L, d, rc, -1, "bulk IN on endpoint 0x%02x (%d of %d bytes read)", ep | 0x80, done, (int)len);
    luaL_pushresultsize(&b, (size_t)done);
    return 1;
}

static int d_string(lua_State *L)
{
    struct usb_dev *d = check_dev(L);
    int idx = (int)luaL_checkinteger(L, 2);
    unsigned char buf[256];
    int n = libusb_get_string_descriptor_ascii(d->h, (uint8_t)idx, buf, sizeof buf);
    if (n < 0)
        return dev_fail(L, d, n, -1, "reading string descriptor %d", idx);
    lua_pushlstring(L, (const char *)buf, (size_t)n);
    return 1;
}

static int d_tostring(lua_State *L)
{
    struct usb_dev *d = luaL_checkudata(L, 1, DEV_MT);
    lua_pushfstring(L, "usb device %s%s", d->where, d->h ? "" : " (closed)");
    return 1;
}

/* usb.tty_of("1-4.2"): /sys/bus/usb/devices/<path>:1.N/tty/<name> for the first interfaces. Read
 * here rather than with mpctl.fs: the recipe file policy keeps Lua's file access out of /sys, and
 * under the simulated bus the umockdev preload redirects these libc calls to the testbed. */
static int u_tty_of(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    luaL_argcheck(L, strchr(path, '/') == NULL && strstr(path, "..") == NULL, 1, "a USB port path such as 1-4.2");
    for (int n = 0; n < 4; n++) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "/sys/bus/usb/devices/%s:1.%d/tty", path, n);
        DIR *dp = opendir(dir);
        if (!dp)
            continue;
        struct dirent *e;
        while ((e = readdir(dp)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            lua_pushfstring(L, "/dev/%s", e->d_name);
            closedir(dp);
            return 1;
        }
        closedir(dp);
    }
    lua_pushnil(L);
    return 1;
}

/* usb.ids_at("1-4.2") -> vid, pid | nil: the device now at that port path, read from sysfs
 * (/sys/bus/usb/devices/<path>/idVendor, idProduct) rather than from libusb's device list. That
 * list only changes on hotplug events, and a process can miss one (on the simulated bus it did,
 * until hold_low_fds above: another process had taken its uevent socket), so "is my board
 * back?" asks sysfs, which cannot miss it. */
static int read_hex_file(const char *file, unsigned *v)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return 0;
    int n = fscanf(f, "%x", v);
    fclose(f);
    return n == 1;
}

static int u_ids_at(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    luaL_argcheck(L, strchr(path, '/') == NULL && strstr(path, "..") == NULL, 1, "a USB port path such as 1-4.2");
    char file[PATH_MAX];
    unsigned vid, pid;
    snprintf(file, sizeof file, "/sys/bus/usb/devices/%s/idVendor", path);
    if (!read_hex_file(file, &vid))
        return 0;
    snprintf(file, sizeof file, "/sys/bus/usb/devices/%s/idProduct", path);
    if (!read_hex_file(file, &pid))
        return 0;
    lua_pushinteger(L, vid);
    lua_pushinteger(L, pid);
    snprintf(file, sizeof file, "/sys/bus/usb/devices/%s/serial", path);
    char serial[256];
    FILE *f = fopen(file, "r");
    if (f && fgets(serial, sizeof serial, f)) {
        serial[strcspn(serial, "\r\n")] = '\0';
        lua_pushstring(L, serial);
    } else {
        lua_pushnil(L);
    }
    if (f)
        fclose(f);
    return 3;
}

int luaopen_mpctl_usb(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__gc", d_close}, {"__close", d_close}, {"__tostring", d_tostring}, {NULL, NULL}};
    static const luaL_Reg methods[] = {
        {"info", d_info},       {"claim", d_claim},     {"release", d_release},   {"set_alt", d_set_alt},
        {"clear_halt", d_clear_halt}, {"reset", d_reset}, {"control", d_control}, {"bulk_out", d_bulk_out},
        {"bulk_in", d_bulk_in}, {"string", d_string},   {"close", d_close},       {NULL, NULL}};
    static const luaL_Reg funcs[] = {
        {"list", u_list}, {"open", u_open}, {"wait", u_wait}, {"parse_url", u_parse_url},
        {"tty_of", u_tty_of}, {"ids_at", u_ids_at}, {NULL, NULL}};
    mpctl_new_class(L, DEV_MT, meta, methods);
    luaL_newlib(L, funcs);
    return 1;
}
