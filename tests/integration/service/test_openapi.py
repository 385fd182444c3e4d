"""The OpenAPI document says what the API does: one error body, the statuses of each route, the key as a security
scheme only when keys are configured, the upload's constraints; and the errors themselves have that body."""

from __future__ import annotations

import pytest

from tests.unit.service.conftest import mp4_bytes

STATUSES = {  # what each operation answers; docs/service.md has the same table
    ("post", "/v1/videos"): {"200", "202", "400", "401", "408", "413", "415", "422", "503"},
    ("get", "/v1/jobs/{job_id}"): {"200", "401", "404", "503"},
    ("delete", "/v1/jobs/{job_id}"): {"204", "401", "404", "503"},
    ("get", "/v1/jobs/{job_id}/result"): {"200", "401", "404", "409", "503"},
    ("get", "/v1/streams"): {"200", "401", "503"},
    ("get", "/v1/streams/{stream_id}"): {"200", "401", "404", "503"},
    ("delete", "/v1/streams/{stream_id}"): {"204", "401", "404", "503"},
    ("post", "/v1/streams/{stream_id}/stop"): {"200", "401", "404", "503"},
    ("post", "/v1/streams/{stream_id}/calibrate"): {"200", "400", "401", "404", "409", "422", "503"},
    ("get", "/v1/streams/{stream_id}/snapshot.jpg"): {"200", "206", "401", "404", "416", "503"},
    ("post", "/v1/streams/{stream_id}/adapt"): {"202", "401", "404", "409", "503"},
    ("get", "/v1/streams/{stream_id}/bundles"): {"200", "401", "404", "503"},
    ("post", "/v1/streams/{stream_id}/bundles/promote"): {"200", "400", "401", "404", "409", "422", "503"},
    ("post", "/v1/streams/{stream_id}/bundles/rollback"): {"200", "401", "404", "409", "503"},
    ("get", "/v1/streams/{stream_id}/events"): {"200", "204", "401", "404", "422", "503"},
    ("get", "/v1/streams/{stream_id}/timeline"): {"200", "401", "404", "422", "503"},
    ("get", "/v1/events"): {"200", "401", "422", "503"},
    ("get", "/v1/events/{event_id}"): {"200", "401", "404", "503"},
    ("get", "/v1/events/{event_id}/scores"): {"200", "401", "404", "503"},
    ("put", "/v1/events/{event_id}/verdict"): {"200", "400", "401", "404", "422", "503"},
    ("delete", "/v1/events/{event_id}/verdict"): {"204", "401", "404", "503"},
    ("get", "/v1/events/{event_id}/snapshot.jpg"): {"200", "206", "401", "404", "416", "422", "503"},
    ("get", "/v1/events/{event_id}/thumbnail.jpg"): {"200", "206", "401", "404", "416", "422", "503"},
    ("get", "/v1/events/{event_id}/clip.mp4"): {"200", "206", "401", "404", "416", "422", "503"},
    ("get", "/healthz"): {"200"},
    ("get", "/readyz"): {"200", "503"},
    ("get", "/metrics"): {"200"},
}
ERROR = "#/components/schemas/ErrorBody"


def operations(spec: dict) -> dict[tuple[str, str], dict]:
    return {(method, path): op for path, item in spec["paths"].items() for method, op in item.items()}


def keyed_spec(settings, keys: list[str]) -> dict:
    from fastapi.testclient import TestClient

    from service.app import create_app

    settings.api_keys = keys
    with TestClient(create_app(settings)) as client:
        return client.get("/openapi.json").json()


def test_every_route_declares_its_statuses_with_the_error_body(settings) -> None:
    spec = keyed_spec(settings, ["k"])
    assert {key: set(op["responses"]) for key, op in operations(spec).items()} == STATUSES
    for (method, path), op in operations(spec).items():
        for status, response in op["responses"].items():
            if status >= "400":
                schema = response["content"]["application/json"]["schema"]["$ref"]
                expected = "#/components/schemas/NotReady" if path == "/readyz" else ERROR
                assert schema == expected, (method, path, status)
    schemas = spec["components"]["schemas"]
    assert schemas["ErrorBody"]["required"] == ["detail", "code"]
    assert "HTTPValidationError" not in schemas  # FastAPI's list-shaped 422 is never answered
    assert set(schemas["NotReady"]["required"]) >= {"detail", "code", "ready"}


def test_streams_can_be_created_only_on_a_deployment_with_an_allow_list(settings) -> None:
    assert ("post", "/v1/streams") not in operations(keyed_spec(settings, []))  # streams are off: no POST
    settings.stream_allowlist = ["127.0.0.1/32", "cams.example"]
    spec = keyed_spec(settings, ["k"])
    assert set(operations(spec)["post", "/v1/streams"]["responses"]) == {"201", "400", "401", "422", "503"}
    events = operations(spec)["get", "/v1/streams/{stream_id}/events"]
    assert all("anyOf" not in p["schema"] for p in events["parameters"])  # no "null" sent as a value
    url = spec["components"]["schemas"]["StreamCreate"]["properties"]["url"]
    assert r"127\.0\.0\.1" in url["pattern"] and "[Cc][Aa][Mm][Ss]" in url["pattern"]
    record = spec["components"]["schemas"]["StreamCreate"]["properties"]["record_url"]
    assert [b["pattern"] for b in record["anyOf"] if b.get("type") == "string"] == [f"^$|{url['pattern']}"]
    assert set(events["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}


def test_the_key_is_an_api_key_security_scheme_required_only_when_configured(settings) -> None:
    with_keys = keyed_spec(settings, ["k"])
    scheme = with_keys["components"]["securitySchemes"]["APIKey"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-API-Key")
    for (_, path), op in operations(with_keys).items():
        v1 = path.startswith("/v1/")
        assert (op.get("security") == [{"APIKey": []}]) == v1 and ("401" in op["responses"]) == v1, path
        assert not any(p["name"].lower() == "x-api-key" for p in op.get("parameters", [])), path
    without = keyed_spec(settings, [])
    for (_, path), op in operations(without).items():
        assert "security" not in op and "401" not in op["responses"], path


def test_upload_body_states_what_the_api_enforces(client) -> None:
    form = client.get("/openapi.json").json()["paths"]["/v1/videos"]["post"]["requestBody"]
    fields = form["content"]["multipart/form-data"]["schema"]["properties"]
    assert form["required"] is True
    assert fields["file"]["format"] == "binary" and fields["file"]["minLength"] == 1
    assert "mp4" in fields["file"]["description"]
    assert (fields["threshold"]["type"], fields["threshold"]["minimum"], fields["threshold"]["maximum"]) == (
        "number", 0.0, 1.0)
    assert fields["frame_scores"]["type"] == "boolean"
    assert "enum" not in fields["model"]  # no worker announced a model yet: any name is accepted
    store = client.app.state.store
    store.redis.hset(store.keys.models, mapping={"ucf": "{}", "xd": "{}"})
    fields = client.get("/openapi.json").json()["paths"]["/v1/videos"]["post"]["requestBody"]["content"][
        "multipart/form-data"]["schema"]["properties"]
    assert fields["model"]["enum"] == ["", "ucf", "xd"]


@pytest.mark.parametrize(("fields", "message"), [
    ({"frame_scores": "1"}, "frame_scores"), ({"frame_scores": "True"}, "frame_scores"),
    ({"threshold": ""}, "threshold"), ({"threshold": ".5"}, "threshold"), ({"threshold": "nan"}, "threshold"),
    ({"skip_unchanged": "some"}, "skip_unchanged"), ({"skip_unchanged": "300"}, "skip_unchanged"),
])
def test_form_fields_are_read_as_the_schema_types_them(client, fields: dict, message: str) -> None:
    response = client.post("/v1/videos", files={"file": ("a.mp4", mp4_bytes())}, data=fields)
    assert response.status_code == 422 and message in response.json()["detail"]
    assert response.json()["code"] == "invalid_option"


def test_an_empty_model_means_the_default(client) -> None:
    response = client.post("/v1/videos", files={"file": ("a.mp4", mp4_bytes())},
                           data={"model": "", "threshold": "1e-1", "frame_scores": "false", "skip_unchanged": "8"})
    assert response.status_code == 202, response.text
    assert response.json()["options"] == {"model": None, "threshold": 0.1, "frame_scores": False,
                                          "skip_unchanged": 8.0}


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PUT", "/v1/jobs/abc", "GET, DELETE"), ("POST", "/v1/jobs/abc", "GET, DELETE"),
    ("GET", "/v1/videos", "POST"), ("DELETE", "/v1/jobs/abc/result", "GET"), ("POST", "/healthz", "GET"),
    ("POST", "/static/app.js", "GET, HEAD"),
])
def test_405_lists_every_method_of_the_path(client, method: str, path: str, allow: str) -> None:
    response = client.request(method, path)
    assert response.status_code == 405 and response.headers["allow"] == allow
    assert response.json() == {"detail": f"{method} is not allowed on {path}; allowed: {allow}",
                               "code": "method_not_allowed"}


def test_every_error_has_the_one_body(client) -> None:
    from service.api.models import ErrorBody

    answers = {
        ("unknown route", "not_found"): client.get("/v2/nothing"),
        ("unknown job", "job_not_found"): client.get("/v1/jobs/nope"),
        ("not finished", "job_not_finished"): client.get(
            f"/v1/jobs/{client.post('/v1/videos', files={'file': ('a.mp4', mp4_bytes())}).json()['id']}/result"),
        ("not a video", "unsupported_media"): client.post("/v1/videos", files={"file": ("a.mp4", b"<html>" * 900)}),
        ("empty file", "bad_upload"): client.post("/v1/videos", files={"file": ("a.mp4", b"")}),
        ("too large", "upload_too_large"): client.post("/v1/videos", files={"file": ("a.mp4", mp4_bytes(2 << 20))}),
        ("bad option", "invalid_option"): client.post("/v1/videos", files={"file": ("a.mp4", mp4_bytes())},
                                                      data={"threshold": "7"}),
    }
    for (what, code), response in answers.items():
        assert response.status_code >= 400, what
        body = response.json()
        assert set(body) == {"detail", "code"} and body["code"] == code, (what, body)
        ErrorBody.model_validate(body)


def test_request_validation_errors_have_the_one_body(client) -> None:
    @client.app.get("/probe")
    def probe(n: int) -> int:
        return n

    response = client.get("/probe", params={"n": "x"})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request" and "query.n" in response.json()["detail"]


def test_an_unexpected_failure_is_a_500_with_the_one_body(settings) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app

    app = create_app(settings)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error; the server log has the details", "code": "internal_error"}


def test_an_empty_callback_url_is_no_callback(client) -> None:
    """The schema lets an empty callback_url through (schemathesis ST201 otherwise); the API reads it as none."""
    client.app.state.settings.stream_allowlist = ["127.0.0.1/32"]
    created = client.post("/v1/streams", json={"url": "rtsp://127.0.0.1/x", "callback_url": ""})
    assert created.status_code == 201, created.text


def test_each_route_describes_its_errors_for_its_own_resource(settings) -> None:
    """A stream route's 404 speaks of streams, a job route's of jobs; each 422 names what that route refuses."""
    settings.stream_allowlist = ["127.0.0.1/32"]
    ops = operations(keyed_spec(settings, ["k"]))
    described = {(method, path, status): response["description"]
                 for (method, path), op in ops.items() for status, response in op["responses"].items()}
    for (method, path, status), text in described.items():
        if status == "404" and not path.startswith("/v1/events"):  # an event's 404 may name its job or stream
            own, other = ("stream", "job") if path.startswith("/v1/streams") else ("job", "stream")
            assert own in text.lower() and other not in text.lower(), (method, path, text)
        elif status == "404":
            assert "event" in text.lower(), (method, path, text)
    assert "URL" in described["post", "/v1/streams", "422"] and "job" not in described["post", "/v1/streams", "422"]
    assert "since" in described["get", "/v1/streams/{stream_id}/events", "422"]
    assert "Last-Event-ID" in described["get", "/v1/streams/{stream_id}/events", "422"]
    assert "until" in described["get", "/v1/streams/{stream_id}/timeline", "422"]
    assert "threshold" in described["post", "/v1/videos", "422"]
    assert "upload storage" in described["post", "/v1/videos", "503"]
    assert "409" in ops["get", "/v1/jobs/{job_id}/result"]["responses"]
    for (method, path, status), text in described.items():  # streams are on here: no route says they are off
        assert "streams are off" not in text, (method, path, status)
