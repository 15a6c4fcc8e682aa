# The device side of mpctl.repl: helpers defined once per raw-REPL session (mpctl/repl/files.lua
# sends this file, minus its comment lines). Tested on the real MicroPython (WebAssembly build) by
# tests/repl/device_py_test.lua. Keep it small: every byte crosses the wire at each connection.
#
# Errors: file operations print '!' and the OSError's errno, plus the name from the device's own
# errno table when it has one ("!2 ENOENT"), so the host can say what went wrong in words on every
# port (the WebAssembly port's numbers are Emscripten's, its errno table MicroPython's: the host
# maps those; mpctl/repl/errno.lua).

# sha256 of file p as hex; '?' when p cannot be opened, '-' when the device has no hashlib.
def _mpctl_h(p):
 try:
  import hashlib,binascii
 except ImportError:
  return '-'
 try:
  f=open(p,'rb')
 except OSError:
  return '?'
 h=hashlib.sha256();b=bytearray(1024);m=memoryview(b)
 while True:
  n=f.readinto(b)
  if not n:
   break
  h.update(m[:n])
 f.close()
 return binascii.hexlify(h.digest()).decode()

# One line for an OSError: '!' errno name.
def _mpctl_e(e):
 n=e.args[0] if e.args else 0
 try:
  import errno
  s=errno.errorcode.get(n,'')
 except ImportError:
  s=''
 print('!%s %s'%(n,s))

# The binary receiver: announces itself with \x06, reads n bytes from stdin in c-byte chunks and
# acks each chunk with \x06 as soon as it is read (before writing it, so the next chunk already
# flows while the file write runs). kbd_intr(-1) lets \x03 through as data. p=None discards
# (capability probe). Each byte must come within t ms: a host that dies mid-chunk must not leave
# the board deaf to Ctrl-C, so after a silence the receiver raises OSError(ETIMEDOUT), removes its
# partial file and restores Ctrl-C. i (stream) and w (wait: true when a byte is ready) are for tests.
def _mpctl_rx(p,n,c,t=2000,i=None,w=None):
 import sys,micropython
 if i is None:
  i=sys.stdin.buffer
 if w is None:
  import select
  q=select.poll();q.register(sys.stdin,select.POLLIN)
  w=lambda:q.poll(t)
 o=sys.stdout
 f=open(p,'wb') if p else None
 micropython.kbd_intr(-1)
 try:
  o.write('\x06')
  b=bytearray(c)
  while n>0:
   k=min(n,c);j=0
   while j<k:
    if not w():
     raise OSError(110)
    d=i.read(1)
    b[j]=d[0];j+=1
   o.write('\x06')
   if f:
    f.write(b if k==c else b[:k])
   n-=k
 except:
  if f:
   f.close();f=None
   import os
   os.remove(p)
  raise
 finally:
  micropython.kbd_intr(3)
  if f:
   f.close()

# A file read: '#size' line, then the bytes raw (e=0) or as base64 lines (e=1).
def _mpctl_tx(p,c,e):
 import sys,os
 o=sys.stdout.buffer if e==0 else sys.stdout
 try:
  n=os.stat(p)[6];f=open(p,'rb')
 except OSError as x:
  _mpctl_e(x)
  return
 sys.stdout.write('#%d\n'%n)
 if e:
  from binascii import b2a_base64
 b=bytearray(c);m=memoryview(b)
 while True:
  k=f.readinto(b)
  if not k:
   break
  o.write(m[:k] if e==0 else b2a_base64(m[:k]))
 f.close()

def _mpctl_inflate(s,d):
 import deflate,os
 with open(s,'rb') as i:
  z=deflate.DeflateIO(i,deflate.ZLIB);b=bytearray(1024);m=memoryview(b)
  with open(d,'wb') as o:
   while True:
    n=z.readinto(b)
    if not n:
     break
    o.write(m[:n])
 os.remove(s)

def _mpctl_mv(t,p):
 import os
 try:
  os.rename(t,p)
 except OSError:
  os.remove(p)
  os.rename(t,p)

# Ends every put: the data went into temporary file t (inflated from z first when compressed),
# which replaces p only when its hash is the host's w, so a transfer cut short or corrupted never
# leaves a file at p that looks complete; a mismatching t is removed, and without hashlib ('-')
# t stays for the host to read back.
def _mpctl_fin(t,p,w,z):
 import os
 if z:
  _mpctl_inflate(z,t)
 h=_mpctl_h(t)
 if h==w:
  _mpctl_mv(t,p)
 elif h!='-':
  os.remove(t)
 return h

# Before a put: removes the temporaries earlier puts left in folder d when they were cut short
# ('<name>.mpctl~', '<name>.mpctl~z'), prints how many, then the hash line of p.
def _mpctl_pre(d,p):
 import os
 k=0
 try:
  for e in os.ilistdir(d or '/'):
   if e[0].endswith('.mpctl~') or e[0].endswith('.mpctl~z'):
    try:
     os.remove((d.rstrip('/') or '')+'/'+e[0]);k+=1
    except OSError:
     pass
 except OSError:
  pass
 print(k)
 print(_mpctl_h(p))

# Lists folder d (or the single entry d when it is a file): 'mode size name' per line.
def _mpctl_ls(d):
 import os
 try:
  m=os.stat(d)[0]
 except OSError as x:
  _mpctl_e(x)
  return
 if not m&0x4000:
  print(m,os.stat(d)[6],d)
  return
 for e in os.ilistdir(d):
  p=(d.rstrip('/') or '')+'/'+e[0]
  try:
   s=os.stat(p);m=s[0];s=s[6]
  except OSError:
   m=e[1];s=-1
  print(m,s,e[0])

# 'mode size' of p, or the error line.
def _mpctl_st(p):
 import os
 try:
  s=os.stat(p)
 except OSError as x:
  _mpctl_e(x)
  return
 print(s[0],s[6])

# The file operations by name (f: 'remove', 'rmdir', 'mkdir', 'rmr' for a whole tree, 'mkdirs'
# for a folder that may exist, 'touch' to create a file if absent without changing its bytes):
# prints 'ok' or the error line.
def _mpctl_op(f,p):
 import os
 def r(p):
  if os.stat(p)[0]&0x4000:
   for e in os.ilistdir(p):
    r(p.rstrip('/')+'/'+e[0])
   os.rmdir(p)
  else:
   os.remove(p)
 try:
  if f=='rmr':
   r(p)
  elif f=='mkdirs':
   try:
    os.mkdir(p)
   except OSError as x:
    try:
     m=os.stat(p)[0]
    except OSError:
     raise x
    if not m&0x4000:
     raise x
  elif f=='touch':
   open(p,'ab').close()
  else:
   getattr(os,f)(p)
 except OSError as x:
  _mpctl_e(x)
  return
 print('ok')

# Filesystem size of p: 'block_size blocks free_blocks' from os.statvfs, '-' on a port without it.
def _mpctl_df(p):
 import os
 if not hasattr(os,'statvfs'):
  print('-')
  return
 try:
  s=os.statvfs(p)
 except OSError as x:
  _mpctl_e(x)
  return
 print(s[1] or s[0],s[2],s[3])
