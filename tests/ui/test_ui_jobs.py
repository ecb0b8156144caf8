"""The Jobs page: issue 24's queue (running, queued, finished) with priority, resources, attempts and
predicted duration; cancel is a POST needing the CSRF token and a key, refused for a finished job with
the message ``modelloop jobs cancel`` gives."""

from __future__ import annotations

import re

import yaml
from ui_toy import KEY, XSS


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)


def _submit(queue, root, command: list[str], priority: int, gpus: int = 0) -> int:
    return queue.submit(project="toy", root=str(root), command=command, priority=priority, submitter="ana",
                        resources={"cpus": 2, "gpus": gpus, "memory": 2**30, "custom": {}},
                        features={"verb": command[0], "rows": None}, logs_dir=str(root / "jobs"))


def test_ui_jobs_lists_the_queue_and_cancels_with_key_and_csrf(tmp_path, capsys) -> None:
    from clirun import cli
    from fastapi.testclient import TestClient
    from toy import RAW_CONFIG

    from modelloop.compute.queue import JobQueue
    from modelloop.config import parse_config
    from modelloop.dashboard import create_app
    from modelloop.project import Project

    (tmp_path / "modelloop.yaml").write_text(yaml.safe_dump(RAW_CONFIG), encoding="utf-8")
    project = Project(parse_config(RAW_CONFIG, root=tmp_path))
    q = JobQueue(project.workspace.catalog)
    done = _submit(q, tmp_path, ["train", "--json"], 50)
    q.schedule("w-test", lambda rows: {done: {"gpus": []}})
    q.finish(done, "w-test", "succeeded", reason="exit 0", exit_code=0, usage={"seconds": 100.0})
    running = _submit(q, tmp_path, ["train", "--json"], 90, gpus=1)
    q.schedule("w-test", lambda rows: {running: {"gpus": [0]}})
    waiting = _submit(q, tmp_path, ["train", "--note", XSS], 10)

    with TestClient(create_app(project, keys=[]), follow_redirects=False) as c:   # no key: read-only
        page = c.get("/jobs").text
        assert 'action="/jobs/cancel"' not in page and "概览" in c.get("/jobs?lang=zh-CN").text
    sections = {g: page[page.index(f'id="jobs-{g}"'):] for g in ("running", "waiting", "finished")}
    assert f'id="job-{running}"' in sections["running"].split('id="jobs-waiting"')[0]
    assert f'id="job-{waiting}"' in sections["waiting"].split('id="jobs-finished"')[0]
    assert f'id="job-{done}"' in sections["finished"]
    row = re.search(rf'<tr id="job-{running}">.*?</tr>', page, re.S).group(0)
    assert "<td>90</td>" in row and "1 GPU" in row and "1 GiB" in row and "<td>1</td>" in row  # prio, res, attempts
    assert "100s" in row                                        # predicted from the finished train job
    assert XSS not in page and "&lt;script&gt;" in page

    with TestClient(create_app(project, keys=[KEY]), follow_redirects=False) as c:
        page = c.get("/jobs").text
        assert page.count('action="/jobs/cancel"') == 2          # running and queued, not finished
        assert c.post("/jobs/cancel", data={"job": str(waiting), "api_key": KEY, "confirm": "yes"}).status_code == 403
        r = c.post("/jobs/cancel", data={"csrf": _csrf(page), "job": str(waiting), "confirm": "yes"})
        assert r.status_code == 401 and q.get(waiting)["state"] == "queued"
        ask = c.post("/jobs/cancel", data={"csrf": _csrf(page), "job": str(waiting), "api_key": KEY})
        assert ask.status_code == 200 and "Cancel (or stop) job" in ask.text and q.get(waiting)["state"] == "queued"
        ok = c.post("/jobs/cancel", data={"csrf": _csrf(ask.text), "job": str(waiting), "confirm": "yes"})
        assert ok.status_code == 303 and ok.headers["location"] == f"/jobs?done=cancel:{waiting}"
        assert q.get(waiting)["state"] == "cancelled"
        stop = c.post("/jobs/cancel", data={"csrf": _csrf(ask.text), "job": str(running), "confirm": "yes"})
        assert stop.status_code == 303 and q.get(running)["stop"] == "cancel"
        assert "(stopping)" in c.get("/jobs").text
        again = c.post("/jobs/cancel", data={"csrf": _csrf(ask.text), "job": str(waiting), "confirm": "yes"})
        unknown = c.post("/jobs/cancel", data={"csrf": _csrf(ask.text), "job": "999", "confirm": "yes"})
    code, _, err = cli(["jobs", "cancel", str(waiting)], capsys, tmp_path)
    message = f"job {waiting} has already finished (cancelled)"
    assert code == 2 and message in err
    assert again.status_code == 409 and message in again.text and "only a queued" in again.text
    assert unknown.status_code == 404 and "job 999 does not exist" in unknown.text
