# Binds an AF_UNIX datagram socket (a path, or an abstract name when it starts with '@') and prints
# every datagram received as one line, newlines replaced by '|'. Stands in for systemd in tests.
import socket, sys
addr = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\0' + addr[1:] if addr.startswith('@') else addr)
print('listening', flush=True)
while True:
    data = s.recv(65536)
    print(data.decode().replace('\n', '|'), flush=True)
