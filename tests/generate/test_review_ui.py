"""The UI's review gallery: thumbnails, approve / reject with CSRF, who and when recorded."""

from __future__ import annotations

import re

import pytest
from generate._gen import SIZE, tiny_model

pytest.importorskip("jinja2")
pytest.importorskip("multipart")


def test_gallery_approve_and_reject(reelflow_home):
    from fastapi.testclient import TestClient

    from reelflow.generate import GenerationItem, GenerationSettings, get_output, make_pairs, run_generation
    from reelflow.generate._sources import ResolvedModel
    from reelflow.store import get_store
    from reelflow.ui import create_app

    store = get_store()
    store.preflight()
    sk, _ = make_pairs(2, seed=1, size=SIZE)
    rows = run_generation(ResolvedModel(tiny_model(epochs=1, n=8), "bg@champion", "registry", "bg/1", "x"),
                          [GenerationItem(name=f"s<{i}>.png", seed=i, sketch=s) for i, s in enumerate(sk)],
                          GenerationSettings(device="cpu"), store=store, verbose=False)
    a, b = rows[0]["id"], rows[1]["id"]
    with TestClient(create_app(store), base_url="http://127.0.0.1") as c:
        page = c.get("/review")
        assert page.status_code == 200 and f'id="o{a}"' in page.text and f'id="o{b}"' in page.text
        assert "s&lt;0&gt;.png" in page.text  # names are text, not markup
        png = c.get(f"/review/{a}/image.png")
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
        assert c.get(f"/review/{a}/image.png?which=input").content.startswith(b"\x89PNG")
        assert c.get("/review/999/image.png").status_code == 404
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        forged = c.post(f"/review/{a}/decision", data={"decision": "approved", "csrf_token": "x"})
        assert forged.status_code == 403 and get_output(a)["status"] == "pending"
        ok = c.post(f"/review/{a}/decision", data={"decision": "approved", "csrf_token": token},
                    follow_redirects=False)
        assert ok.status_code == 303
        no_reason = c.post(f"/review/{b}/decision", data={"decision": "rejected", "csrf_token": token})
        assert no_reason.status_code == 400 and "needs a reason" in no_reason.text
        c.post(f"/review/{b}/decision", data={"decision": "rejected", "reason": "muddy sky", "csrf_token": token})
        approved = c.get("/review?status=approved").text
        assert f'id="o{a}"' in approved and f'id="o{b}"' not in approved
        assert c.get("/review?status=bogus").status_code == 400
    out = get_output(b)
    assert out["status"] == "rejected" and out["decisions"][-1]["reason"] == "muddy sky"
    assert out["decisions"][-1]["user"] and out["decisions"][-1]["at"] > 0
