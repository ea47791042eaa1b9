"""The embedded default's secret key: made once per $TERTULIA_HOME, even when many processes start at once."""

import os
import subprocess
import sys
import time


def test_processes_starting_together_on_a_fresh_home_share_one_key(tmp_path):
    env = {**os.environ, "TERTULIA_HOME": str(tmp_path)}
    env.pop("SECRET_KEY", None)
    # Python is imported first; then all of them read the settings at the same instant.
    start = time.time() + 2.0
    code = (f"import time, dj_database_url, dj_email_url; time.sleep(max(0.0, {start!r} - time.time())); "
            "from tertulia import settings; print(settings.SECRET_KEY)")
    starts = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True) for _ in range(8)]
    results = [(process.wait(timeout=60), *process.communicate()) for process in starts]
    assert [rc for rc, _, _ in results] == [0] * 8, [err for _, _, err in results]
    keys = {out.strip() for _, out, _ in results}
    assert len(keys) == 1 and len(keys.pop()) >= 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret_key"]  # no draft left behind
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
