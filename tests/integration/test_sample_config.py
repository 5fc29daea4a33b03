"""The shipped sample configuration (contrib/somirrord.yaml) is valid: `somirrord -t` accepts it
with generated keys; with only its paths and port moved into a temporary directory it serves a
real cycle, and `somirrorctl -c CONFIG tables CTX` then lists the tenant's mirrored tables with
their positions, read from the mirror store."""

import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SAMPLE = os.path.join(harness.SRCDIR, "contrib", "somirrord.yaml")


def run(*args, check=True):
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", timeout=120)
    if check and proc.returncode != 0:
        harness.fail("%s exited %d: %s" % (" ".join(args), proc.returncode, proc.stdout))
    return proc


def main():
    with tempfile.TemporaryDirectory(prefix="smsample") as work:
        task = harness.program("somirror-task")
        run(task, "keys", "--out", work)
        text = open(SAMPLE).read()
        text = text.replace("/etc/somirror/app-private.xml", os.path.join(work, "app.xml"))
        text = text.replace("/etc/somirror/vendor.crt", os.path.join(work, "vendor.crt"))
        checked = os.path.join(work, "checked.yaml")
        open(checked, "w").write(text)
        out = run(harness.program("somirrord"), "-t", "-c", checked).stdout
        assert "configuration ok" in out, out

        # The same file, served from the temporary directory.
        port = harness.free_port()
        for old, new in (("127.0.0.1:8080", "127.0.0.1:%d" % port), ("/run/", work + "/"),
                         ("/var/log/somirror/", work + "/"), ("/var/lib/somirror", work + "/mirrors")):
            text = text.replace(old, new)
        text = re.sub(r"(?m)^(user|group): .*\n", "", text)   # no privilege drop in the test
        text = re.sub(r"(?m)^workers: .*$", "workers: 2", text)
        text = re.sub(r"(?m)^(  table_sql:).*$", r"\1 " + work + "/sql", text)
        os.makedirs(os.path.join(work, "mirrors"))
        os.makedirs(os.path.join(work, "sql"))
        config = os.path.join(work, "somirrord.yaml")
        open(config, "w").write(text)
        app_id = re.search(r'(?m)^  id: "([0-9]+)"', text).group(1)

        source = os.path.join(work, "source.db")
        run(task, "gen", "--db", source, "--scale", "30", "--seed", "3")
        run(task, "provision", "--db", source)
        proc = subprocess.Popen([harness.program("somirrord"), "-f", "-c", config],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            harness.wait_until(lambda: _healthy(port), 15, what="/healthz")
            run(task, "run", "--once", "--url", "http://127.0.0.1:%d/" % port, "--app-id", app_id,
                "--vendor-key", os.path.join(work, "vendor.key"),
                "--vendor-cert", os.path.join(work, "vendor.crt"),
                "--app-public-key", os.path.join(work, "app.pub"), "--tenant", "Cust7", "--db", source)
            tables = run(harness.program("somirrorctl"), "-c", config, "tables", "Cust7").stdout
            lines = [l for l in tables.splitlines() if l.strip()]
            assert any(re.match(r"contact\s+\d+\s+[0-9a-f]{64}", l) for l in lines), tables
            assert not any(l.startswith("credentials") for l in lines), tables
            status = run(harness.program("somirrorctl"), "-c", config, "show", "tenant", "Cust7").stdout
            assert "Cust7" in status and "idle" in status, status
            bad = run(harness.program("somirrorctl"), "-c", config, "show", "tenant", "Nobody", check=False)
            assert bad.returncode == 1 and bad.stdout.startswith("error: "), bad.stdout
        finally:
            proc.terminate()
            proc.wait(30)
    print("sample config: ok")


def _healthy(port):
    try:
        return harness.request(port, "GET", "/healthz")[0] == 200
    except OSError:
        return False


if __name__ == "__main__":
    main()
