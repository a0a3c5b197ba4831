"""The chart's forward-auth switch (``forwardAuth.enabled``): ingress-nginx annotations on an
Ingress to the site's own Service instead of routing the site through the proxy Service, the
process started without an upstream, and the renders it refuses."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.helm.chart import CHART, FULLNAME, RELEASE, SECRET, _template

FA_SET = [
    "--set", "forwardAuth.enabled=true", "--set", "forwardAuth.siteService.name=shop",
    "--set", "store.url=redis://store:6379/0", "--set", f"auth.secret={SECRET}",
    "--set", "ingress.enabled=true", "--set", "ingress.className=nginx",
    "--set", "trustedProxies={10.0.0.0/8}",
]  # fmt: skip


def _docs(helm: str, *args: str) -> list[dict[str, Any]]:
    result = _template(helm, *FA_SET, *args)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_forward_auth_ingress(helm: str) -> None:
    docs = _docs(helm)
    ingresses = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Ingress"}
    assert set(ingresses) == {f"{FULLNAME}-site", FULLNAME}
    site = ingresses[f"{FULLNAME}-site"]
    notes = site["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/auth-url"] == (
        f"http://{FULLNAME}.shop.svc.cluster.local:80/_waitroom/auth"
    )
    assert notes["nginx.ingress.kubernetes.io/auth-signin"] == (
        "$scheme://$host/_waitroom/wait?rd=$escaped_request_uri"
    )
    assert notes["nginx.ingress.kubernetes.io/auth-response-headers"] == "Waitroom-Verified"
    assert notes["nginx.ingress.kubernetes.io/auth-cache-key"] == "$host$request_uri$http_cookie"
    assert notes["nginx.ingress.kubernetes.io/auth-cache-duration"] == "200 5s"
    (path,) = site["spec"]["rules"][0]["http"]["paths"]
    assert path["backend"]["service"] == {"name": "shop", "port": {"number": 80}}
    (own,) = ingresses[FULLNAME]["spec"]["rules"][0]["http"]["paths"]
    assert own["path"] == "/_waitroom/" and own["backend"]["service"]["name"] == FULLNAME
    assert not any(k.startswith("nginx.ingress.kubernetes.io/auth") for k in
                   ingresses[FULLNAME]["metadata"].get("annotations", {}))  # fmt: skip
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "WAITROOM_UPSTREAM" not in env
    assert env["WAITROOM_AUTH_CACHE_SECONDS"]["value"] == "5"


def test_no_cache_annotations_at_zero(helm: str) -> None:
    docs = _docs(helm, "--set", "forwardAuth.cacheSeconds=0")
    site = next(d for d in docs if d["metadata"]["name"] == f"{FULLNAME}-site")
    assert "nginx.ingress.kubernetes.io/auth-cache-key" not in site["metadata"]["annotations"]


def test_proxy_mode_renders_no_auth_annotations(helm: str) -> None:
    result = _template(helm, "--set", "upstream=http://shop:8080", "--set",
                       f"auth.secret={SECRET}", "--set", "ingress.enabled=true", "--set",
                       "store.url=redis://store:6379/0")  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "auth-url" not in text and f"{FULLNAME}-site" not in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "upstream=http://shop:8080"], "forwardAuth.enabled: leave upstream empty"),
        (["--set", "ingress.enabled=false"], "forwardAuth.enabled needs ingress.enabled"),
        (["--set", "forwardAuth.siteService.name="], "forwardAuth.siteService.name"),
        (["--set", "trustedProxies=null"], "forwardAuth.enabled needs trustedProxies"),
        (["--set", "rooms[0].name=r", "--set", "rooms[0].capacity=5",
          "--set", "rooms[0].bypass.methods={OPTIONS}"],
         "forwardAuth.cacheSeconds must be 0: room r bypasses by method"),
    ],
)  # fmt: skip
def test_forward_auth_refuses_incomplete_values(helm: str, extra: list[str], message: str) -> None:
    result = _template(helm, *FA_SET, *extra)
    assert result.returncode != 0, result.stdout
    assert message in result.stderr


def test_chart_values_document_the_switch() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["forwardAuth"] == {
        "enabled": False, "siteService": {"name": "", "port": 80}, "cacheSeconds": 5,
    }  # fmt: skip
    assert RELEASE in FULLNAME
