"""Operations: the log file reopened on SIGUSR1 after a rotation renamed it ([log] file)."""
import os
import signal

from conftest import ExtraGateway, wait_for


def test_sigusr1_reopens_the_log_file(stack):
    path = os.path.join(stack.dir, "rotating-file.log")
    gw = ExtraGateway(stack, "rotating", lambda t: t.replace("[log]\n", "[log]\nfile = %s\n" % path))
    try:
        assert wait_for(lambda: os.path.exists(path) and "listening" in open(path).read(), 30)
        assert "listening" not in gw.log()  # the lines go to the file, not to stderr
        os.rename(path, path + ".1")
        gw.proc.send_signal(signal.SIGUSR1)
        assert wait_for(lambda: os.path.exists(path) and "SIGUSR1: log reopened" in
                        open(path).read(), 30), "no new log file after SIGUSR1"
        assert stack.health("backend", addr=gw.addr) == "SERVING"
        gw.proc.send_signal(signal.SIGTERM)
        gw.proc.wait(30)
        assert "draining" in open(path).read()  # later lines in the new file
        assert "SIGUSR1" not in open(path + ".1").read()  # and not in the rotated one
    finally:
        gw.close()
