"""`manage.py boot`, the entrypoint's preparation in one process: two containers starting at once on one
fresh database both come up (the migrate lock puts one migration after the other), with the demo loaded
once, the admin login created once and the worker programs rendered."""
import subprocess
import sys

from tests.e2e.appliance import ROOT, ProcessEnv


def test_two_boots_at_once_on_one_fresh_database_both_succeed(tmp_path):
    env = ProcessEnv(tmp_path, {"PINEOPS_ADMIN_PASSWORD": "boot-test-password"})
    try:
        procs = [subprocess.Popen([sys.executable, "manage.py", "boot", "--load-demo", "--timeout", "20"], cwd=ROOT,
                                  env=env.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        results = [(p.wait(180), *p.communicate()) for p in procs]
        assert [rc for rc, _, _ in results] == [0, 0], results
        assert all("login: admin" in out for _, out, _ in results), results
        assert env.query("SELECT COUNT(*) FROM auth_user WHERE username = 'admin'") == [(1,)]
        assert env.query("SELECT name, enabled FROM trading_strategy ORDER BY name") == [("ibs_a", True), ("ibs_b", False)]
        assert (tmp_path / "migrate.lock").exists()
        assert "program:worker-ibs_a" in (tmp_path / "supervisor" / "workers.conf").read_text()
    finally:
        env.cleanup()


def test_boot_names_a_database_it_cannot_reach(tmp_path):
    env = ProcessEnv(tmp_path, {"DATABASE_URL": "postgres://postgres@127.0.0.1:9/none"})
    try:
        result = env.manage("boot", "--timeout", "1", check=False)
        assert result.returncode == 1
        assert "database not reachable after 1 s" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    finally:
        env.cleanup()
