"""The admin listener's OpenAPI document: every route described, the bounds the patch keeps, and
a schemathesis fuzz run against the live listener."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.admin_helpers import AUTH, TOKEN, client
from waitroom_proxy.admin import BearerAuth, build_admin, openapi_document


# ---------------------------------------------------------------------------- OpenAPI
@pytest.mark.parametrize("store_kind", ["memory"], indirect=True)
async def test_openapi_describes_every_route(make_env: Any) -> None:
    async with make_env() as env, client(env.a.admin, headers=AUTH) as adm:
        doc = (await adm.get("/admin/openapi.json")).json()
    assert doc == openapi_document()
    assert doc["openapi"].startswith("3.")
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
    }
    app = build_admin(env.a.engine, TOKEN)
    assert isinstance(app, BearerAuth)
    served = {(m, r.path) for r in app.app.routes for m in r.methods - {"HEAD"}}
    described = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert served == described
    patch = doc["components"]["schemas"]["PolicyPatch"]
    from waitroom_proxy.service import MUTABLE_FIELDS

    assert (
        set(patch["properties"]) == set(MUTABLE_FIELDS) and patch["additionalProperties"] is False
    )


@pytest.mark.parametrize("store_kind", ["memory"], indirect=True)
async def test_openapi_bounds_are_the_bounds_the_patch_keeps(make_env: Any) -> None:
    """The document and the API come from one schema: every advertised bound is exactly the
    one the PATCH enforces (durations used to be advertised up to 366 days and refused above
    365)."""
    async with make_env(capacity=2) as env, client(env.a.admin, headers=AUTH) as adm:
        url = f"/admin/rooms/{env.room}"
        doc = (await adm.get("/admin/openapi.json")).json()
        properties = doc["components"]["schemas"]["PolicyPatch"]["properties"]

        async def field_problems(body: dict[str, Any], name: str) -> list[str]:
            r = await adm.patch(url, json=body)
            await adm.delete(f"{url}/overrides")
            if r.status_code == 200:
                return []
            assert r.status_code == 422, r.text
            return [d["error"] for d in r.json()["detail"] if d["field"] == name]

        bounded = 0
        for name, prop in properties.items():
            schema = next(b for b in prop.get("anyOf", [prop]) if b.get("type") != "null")
            if "maximum" not in schema:
                continue
            bounded += 1
            top = schema["maximum"]
            # session_ttl may not exceed session_max: raise both, so only the bound is tested.
            extra = {"session_max": top} if name == "session_ttl" else {}
            assert await field_problems({name: top, **extra}, name) == [], (name, top)
            assert await field_problems({name: top + 1, **extra}, name), (name, top + 1)
            if schema.get("minimum") is not None and schema["type"] == "integer":
                low = schema["minimum"]
                assert await field_problems({name: low}, name) == [], (name, low)
                assert await field_problems({name: low - 1}, name), (name, low - 1)
        assert bounded == 9  # capacity, admit_rate, max_queue_length, pow_difficulty, 5 durations


def _st() -> str:
    found = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if found is None:
        pytest.fail("schemathesis is not installed (pip install -e '.[test]')")
    return found


# One worker: on CPython 3.11.7 the AST constructor's recursion counter is process-wide state, and
# schemathesis worker threads racing through Hypothesis's lambda descriptions (ast.parse) made
# 1 run in 3 fail with "SystemError: AST constructor recursion depth mismatch" (0 in 21 runs
# with one worker).
async def _run_st(args: list[str], har: Path, *, examples: int, phases: str) -> list[int]:
    proc = await asyncio.create_subprocess_exec(
        _st(), "run", *args,
        "--checks", "not_a_server_error",
        "--max-examples", str(examples),
        "--phases", phases,
        "--seed", "1",
        "--no-shrink",
        "--workers", "1",
        "--request-timeout", "5",
        "--report", "har",
        "--report-har-path", str(har),
        cwd=str(har.parent),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={"PATH": str(Path(sys.executable).parent), "NO_COLOR": "1",
             "SCHEMATHESIS_TELEMETRY": "false", "HOME": str(har.parent)},
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    entries = json.loads(har.read_text())["log"]["entries"]
    print(f"schemathesis: {len(entries)} requests", file=sys.stderr)
    return [int(e["response"]["status"]) for e in entries]


@pytest.mark.slow
@pytest.mark.parametrize("store_kind", ["memory"], indirect=True)
async def test_schemathesis_fuzz(make_env: Any, tmp_path: Path) -> None:
    async with make_env(capacity=2) as env:
        async with client(env.a.admin, headers=AUTH) as adm:
            schema = (await adm.get("/admin/openapi.json")).json()
        # Fuzz with a room that exists, so the deep paths are reached too.
        for ops in schema["paths"].values():
            for op in ops.values():
                for param in op.get("parameters", []):
                    if param["name"] == "room":
                        param["schema"] = {"type": "string", "enum": [env.room, "no-such-room"]}
        schema_file = tmp_path / "openapi.json"
        schema_file.write_text(json.dumps(schema))

        statuses = await _run_st(
            [str(schema_file), "--url", env.a.admin, "-H", f"Authorization: Bearer {TOKEN}"],
            tmp_path / "valid.har",
            examples=25,
            phases="examples,coverage,fuzzing",
        )
        assert len(statuses) > 100, len(statuses)
        assert not [s for s in statuses if s >= 500], sorted(set(statuses))
        assert {200, 404, 422} <= set(statuses), sorted(set(statuses))

        statuses = await _run_st(
            [
                str(schema_file),
                "--url",
                env.a.admin,
                "--exclude-path-regex",
                "^/admin/(dashboard)?$",
            ],
            tmp_path / "anonymous.har",
            examples=8,
            phases="examples,fuzzing",
        )
        assert len(statuses) > 50 and set(statuses) == {401}, sorted(set(statuses))
