# Task 0 serves one line on port 8000; the other tasks read it from capsule app-0.
if [ "$SLURM_PROCID" = 0 ]; then
    exec python3 -c '
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 8000))
s.listen()
c, _ = s.accept()
c.sendall(b"hello from " + socket.gethostname().encode() + b"\n")
c.close()'
fi
exec python3 -c '
import socket, time
for i in range(200):
    try:
        c = socket.create_connection(("app-0", 8000))
        break
    except OSError:
        time.sleep(0.05)
print("task 1 got", c.recv(100).decode().strip())'
