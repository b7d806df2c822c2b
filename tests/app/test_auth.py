"""Roles with MONAI Label's authentication on: a real RS256 key pair, a local realm that serves its public key and
issues tokens the way Keycloak does, and a real server checking real tokens (nothing in the check is replaced in
the test; the app's own repair of MONAI Label's PyJWT 2 call is what runs)."""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import jwt
import numpy as np
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from spinemorph.io import read_labelmap, write_labelmap
from tests.app.server import REPO, free_port, running_server

ADMIN, REVIEWER, ANNOTATOR, USER = (f"monailabel-{r}" for r in ("admin", "reviewer", "annotator", "user"))
PEOPLE = {  # user name -> (password, realm roles), as a Keycloak realm would hold them
    "ada": ("ada-pw", [ADMIN, REVIEWER, ANNOTATOR, USER]),
    "ann": ("ann-pw", [ANNOTATOR, USER]),
    "uma": ("uma-pw", [USER]),
}


def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def token(key, username: str, roles: list[str], lifetime: float = 300.0, algorithm: str = "RS256") -> str:
    now = int(time.time())
    claims = {"preferred_username": username, "email": f"{username}@example.org", "name": username.title(),
              "realm_access": {"roles": roles}, "iat": now, "exp": now + int(lifetime)}
    return jwt.encode(claims, key, algorithm=algorithm)


@contextmanager
def realm(key):
    """Serve a Keycloak-like realm on 127.0.0.1: its public key, its OpenID configuration and a password grant."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/realms/spinemorph"
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    class Realm(BaseHTTPRequestHandler):
        def _json(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 (http.server's name)
            if self.path == "/realms/spinemorph":
                self._json(200, {"realm": "spinemorph", "public_key": base64.b64encode(der).decode(),
                                 "token-service": f"{base}/protocol/openid-connect", "tokens-not-before": 0})
            elif self.path == "/realms/spinemorph/.well-known/openid-configuration":
                self._json(200, {"issuer": base, "token_endpoint": f"{base}/protocol/openid-connect/token"})
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self):  # noqa: N802
            form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
            name, password = form.get("username", [""])[0], form.get("password", [""])[0]
            if self.path.endswith("/token") and name in PEOPLE and PEOPLE[name][0] == password:
                self._json(200, {"access_token": token(key, name, PEOPLE[name][1]), "token_type": "Bearer"})
            else:
                self._json(401, {"error": "invalid_grant", "error_description": "Invalid user credentials"})

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", port), Realm)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield base
    finally:
        httpd.shutdown()


@pytest.fixture(scope="module")
def secured(studies, tiny_model, tmp_path_factory):
    """A server with authentication on, checking tokens against the local realm: (url, signing key)."""
    key = _key()
    models = tmp_path_factory.mktemp("auth-models")
    conf = {"models": "spinemorph_levels", "spinemorph_levels_weights": tiny_model, "model_dir": models,
            "epistemic_passes": 2}
    with realm(key) as base, pytest.MonkeyPatch.context() as mp:
        mp.setenv("MONAI_LABEL_AUTH_ENABLE", "true")
        mp.setenv("MONAI_LABEL_AUTH_REALM_URI", base)
        mp.setenv("MONAI_LABEL_AUTH_CLIENT_ID", "spinemorph")
        with running_server(studies, conf, models / "server.log", ready="/auth/") as url:
            yield url, key


def _as(t: str | None) -> dict:
    return {"Authorization": f"Bearer {t}"} if t else {}


def _labelled(url: str, t: str) -> str:
    objects = requests.get(f"{url}/datastore/", params={"output": "all"}, headers=_as(t), timeout=30).json()
    return sorted(k for k, v in objects["objects"].items() if "final" in v["labels"])[0]


def test_tokens_that_do_not_verify_are_refused(secured):
    url, key = secured
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    refused = {
        "no token": None,
        "another realm's key": token(_key(), "ada", PEOPLE["ada"][1]),
        "expired": token(key, "ada", PEOPLE["ada"][1], lifetime=-60),
        "not a JWT": "not-a-token",
    }
    for what, t in refused.items():
        r = requests.get(f"{url}/info/", headers=_as(t), timeout=30)
        assert r.status_code == 401, f"{what}: {r.status_code} {r.text[:200]}"
    # the realm's public key used as an HMAC secret (algorithm confusion) is not a signature either
    forged = jwt.encode({"preferred_username": "eve", "realm_access": {"roles": PEOPLE["ada"][1]},
                         "exp": int(time.time()) + 300}, "x" * 32, algorithm="HS256")
    assert requests.get(f"{url}/info/", headers=_as(forged), timeout=30).status_code == 401
    assert public_pem  # the key the server fetched from the realm, for the record
    ok = requests.get(f"{url}/info/", headers=_as(token(key, "uma", PEOPLE["uma"][1])), timeout=30)
    assert ok.status_code == 200 and "spinemorph_levels" in ok.json()["models"]


def test_a_user_reads_and_infers_only(secured, tmp_path):
    url, key = secured
    t = token(key, "uma", PEOPLE["uma"][1])
    image = _labelled(url, t)
    assert requests.post(f"{url}/infer/spinemorph_levels", params={"image": image, "output": "json"},
                         headers=_as(t), timeout=120).status_code == 200
    assert requests.post(f"{url}/activelearning/random", json={}, headers=_as(t), timeout=30).status_code == 200
    label = requests.get(f"{url}/datastore/label", params={"label": image, "tag": "final"}, headers=_as(t), timeout=30)
    assert label.status_code == 200
    (tmp_path / "label.nii.gz").write_bytes(label.content)
    with open(tmp_path / "label.nii.gz", "rb") as fh:
        save = requests.put(f"{url}/datastore/label", params={"image": image, "tag": "final"},
                            files={"label": ("label.nii.gz", fh)}, headers=_as(t), timeout=30)
    forbidden = {
        "save a label": save,
        "train": requests.post(f"{url}/train/spinemorph_levels", json={"max_epochs": 1}, headers=_as(t), timeout=30),
        "delete an image": requests.delete(f"{url}/datastore/image", params={"id": image}, headers=_as(t), timeout=30),
        "upload an image": requests.put(f"{url}/datastore/image", params={"image": "new-one"},
                                        files={"file": ("x.nii.gz", b"")}, headers=_as(t), timeout=30),
        "read the logs": requests.get(f"{url}/logs/", headers=_as(t), timeout=30),
    }
    for what, r in forbidden.items():
        assert r.status_code == 403, f"{what}: {r.status_code} {r.text[:200]}"


def test_an_annotator_saves_labels_but_cannot_delete_or_train(secured, tmp_path):
    url, key = secured
    t = token(key, "ann", PEOPLE["ann"][1])
    image = _labelled(url, t)
    label = requests.get(f"{url}/datastore/label", params={"label": image, "tag": "final"}, headers=_as(t), timeout=30)
    (tmp_path / "label.nii.gz").write_bytes(label.content)
    labels, geometry = read_labelmap(tmp_path / "label.nii.gz")
    edited = labels.copy()
    edited[labels == np.max(labels)] = 0
    write_labelmap(tmp_path / "edited.nii.gz", edited, geometry)
    with open(tmp_path / "edited.nii.gz", "rb") as fh:
        save = requests.put(f"{url}/datastore/label", params={"image": image, "tag": "final"},
                            files={"label": ("edited.nii.gz", fh)}, headers=_as(t), timeout=30)
    assert save.status_code == 200, save.text
    forbidden = {
        "train": requests.post(f"{url}/train/spinemorph_levels", json={"max_epochs": 1}, headers=_as(t), timeout=30),
        "delete an image": requests.delete(f"{url}/datastore/image", params={"id": image}, headers=_as(t), timeout=30),
        "delete a label": requests.delete(f"{url}/datastore/label", params={"id": image, "tag": "final"},
                                          headers=_as(t), timeout=30),
        "replace the model": requests.put(f"{url}/model/spinemorph_levels", files={"file": ("m.pt", b"x")},
                                          headers=_as(t), timeout=30),
    }
    for what, r in forbidden.items():
        assert r.status_code == 403, f"{what}: {r.status_code} {r.text[:200]}"
    assert "admin" in forbidden["replace the model"].json()["detail"]


def test_even_an_admin_cannot_delete_a_radiograph_unless_the_server_allows_it(secured):
    url, key = secured
    t = token(key, "ada", PEOPLE["ada"][1])
    image = _labelled(url, t)
    r = requests.delete(f"{url}/datastore/image", params={"id": image}, headers=_as(t), timeout=30)
    assert r.status_code == 403 and "allow_delete" in r.json()["detail"]
    assert image in requests.get(f"{url}/datastore/", params={"output": "all"}, headers=_as(t),
                                 timeout=30).json()["objects"]


def test_the_slicer_client_logs_in_through_the_server(secured, tmp_path):
    """The Slicer module's client: user name and password to /auth/token, then the token on every call."""
    sys.path.insert(0, str(REPO / "slicer_module" / "SpineMorph"))
    from SpineMorphLib.client import ServerError, SpineMorphClient

    url, _ = secured
    client = SpineMorphClient(url)
    with pytest.raises(ServerError) as refused:
        client.info()
    assert refused.value.status == 401
    with pytest.raises(ServerError) as wrong:
        client.login("ann", "not-her-password")
    assert wrong.value.status == 401 and "password" in str(wrong.value)
    client.login("ann", "ann-pw")
    assert "spinemorph_levels" in client.info()["models"]
    sample = client.next_sample("random")
    label_file, result = client.infer("spinemorph_levels", sample["id"], tmp_path)
    assert label_file.exists() and "morphometry" in result
