"""Contract fuzzing of every endpoint from the published OpenAPI schema (schemathesis):
positive and negative requests, with random ids and with ids of real scenes and jobs, against
a real server. No request may produce a 5xx (except the documented JSON 503 "not available
in this build" of a part that has not landed yet), and every 4xx is JSON ``{"error": ...}``.
"""

from __future__ import annotations

import json

import pytest

from svc_helpers import C, require, start

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is a test extra")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

EXAMPLES_PER_OPERATION = 20


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    cl = start(tmp_path_factory, "fuzz", extra=["--max-image-side", "48", "--max-frames", "3",
                                               "--max-jobs", "6"])
    yield cl
    cl.close()


def test_no_server_errors_on_any_endpoint(fuzz_server, small_scene):
    require("exgs.render")
    cl = fuzz_server
    _, path = small_scene
    (cl.allow_dir / "a.ply").write_bytes(path.read_bytes())
    sid = cl.upload(path)["id"]
    cam = {"width": 16, "height": 16, "fx": 20.0, "fy": 20.0, "cx": 8.0, "cy": 8.0,
           "world_to_camera": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 3], [0, 0, 0, 1]]}
    job = cl.submit_render(sid, [cam])
    cl.wait(job["id"])
    real = {"scene_id": sid, "job_id": job["id"], "index": 0}
    conn = C.ExgsClient(cl.url, cl.token)
    raw, _ = conn._request("GET", "/openapi.json", raw=True)
    schema = schemathesis.openapi.from_dict(json.loads(raw))
    auth = {"Authorization": f"Bearer {cl.token}"}
    failures, calls = [], {}

    def check(op, case):
        resp = case.call(base_url=cl.url, headers=auth, timeout=60)
        codes = calls.setdefault(op.label, {})
        codes[resp.status_code] = codes.get(resp.status_code, 0) + 1
        body = resp.content
        if resp.status_code == 202:  # keep the queue short: drop accepted jobs at once
            conn.delete_job(json.loads(body)["id"])
        if resp.status_code >= 500:
            try:
                err = json.loads(body)["error"]
            except (ValueError, KeyError, TypeError):
                err = body[:200]
            if resp.status_code == 503 and "not available in this build" in str(err):
                return resp.status_code
            failures.append(f"{op.label} → {resp.status_code}: {err} "
                            f"({case.path_parameters}, {str(case.body)[:200]})")
        elif 400 <= resp.status_code < 500:
            try:
                assert isinstance(json.loads(body)["error"], str)
            except (ValueError, KeyError, TypeError, AssertionError):
                failures.append(f"{op.label} → {resp.status_code} without JSON error: "
                                f"{body[:200]!r}")
        return resp.status_code

    def fuzz(op, strategies):
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=st.one_of(strategies))
        def run(case):
            check(op, case)

        return run

    valid_bodies = {"/v1/scenes/{scene_id}/render": {"cameras": [cam], "size": [8, 6]},
                    "/v1/scenes/{scene_id}/compress": {"keep": 0.5},
                    "/v1/scenes/open": {"path": "a.ply"},
                    "/v1/scenes/{scene_id}/facts": {"kept_fraction": 0.5}}
    explicit = {}
    for result in schema.get_all_operations():
        op = result.ok()
        names = {p.name for p in op.path_parameters}
        fixed = {k: real[k] for k in names}
        # 1. one valid request with real ids: the handlers behind the validation run
        if op.method.upper() != "DELETE" and (names or op.path in valid_bodies):
            body = valid_bodies.get(op.path, schemathesis.core.NOT_SET)
            explicit[op.label] = check(op, schema.make_case(
                operation=op, path_parameters=fixed, body=body,
                media_type="application/json" if op.path in valid_bodies else None))
        # 2. generated requests: positive, negative, and positive with the real ids
        strategies = [op.as_strategy(GenerationMode.POSITIVE),
                      op.as_strategy(GenerationMode.NEGATIVE)]
        if names and op.method.upper() != "DELETE":
            strategies.append(op.as_strategy(GenerationMode.POSITIVE, path_parameters=fixed))

        fuzz(op, strategies)()

    assert len(calls) == len(list(schema.get_all_operations()))
    # the valid requests with real ids succeeded (503 only for a part missing in this build)
    bad = {k: v for k, v in explicit.items() if not (200 <= v < 300 or v == 503)}
    assert not bad and len(explicit) >= 8, (explicit, json.dumps(calls))
    assert not failures, "\n".join(failures[:20])
    assert cl.health()["ok"]  # still alive
    print("explicit:", json.dumps(explicit), "fuzzed:", json.dumps(calls))
