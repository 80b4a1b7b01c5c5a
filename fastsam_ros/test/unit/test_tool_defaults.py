"""The user tools' command lines and request parsing, in this process: the defaults that keep a
robot safe (who can reach the web page, which files a recording may replace, how long and how
fast a player runs) and the limits on what a request may carry."""

from __future__ import annotations

import argparse
import os
import time
import unicodedata
from pathlib import Path

import pytest

from fastsam_ros.core.parameters import default_of
from fastsam_ros.tools import command_line, export, node_client, play, record, web


@pytest.fixture
def refused(capsys):
    """Runs a command-line parser that must refuse: its one-line error, after exit code 2."""

    def run(parse, *args) -> str:
        with pytest.raises(SystemExit) as stopped:
            parse(*args)
        assert stopped.value.code == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1
        return error

    return run


# fastsam_web


def test_the_web_page_listens_on_this_machine_only_unless_told_otherwise():
    args = web.arguments([])
    assert (args.host, args.port, args.node, args.camera) == ("127.0.0.1", 8080, "fastsam", "")
    assert (args.jpeg_quality, args.service_timeout) == (80, 30.0)
    served = web.Served.of(args.host, args.port)
    assert served.urls == ("http://127.0.0.1:8080/",)
    assert served.hosts == {"127.0.0.1:8080", "localhost:8080", "[::1]:8080"}, "no other Host is answered"


def test_listening_on_every_interface_is_announced_as_a_warning(capsys):
    for host, named in (("0.0.0.0", "0.0.0.0"), ("::", "::"), ("", "all")):
        web.announce(web.Served.of(host, 8080), host, "/camera/image_raw")
        assert capsys.readouterr().err == (
            f"fastsam_web: WARNING: listening on all interfaces ({named}) with no authentication: anyone who can "
            "reach this machine sees the camera and sends prompts to the node. Use --host 127.0.0.1 unless this "
            "network is trusted.\n"
        )
    web.announce(web.Served.of("127.0.0.1", 8080), "127.0.0.1", "/camera/image_raw")
    output = capsys.readouterr()
    assert output.err == ""
    assert output.out == "fastsam_web: open http://127.0.0.1:8080/ (camera image from /camera/image_raw)\n"
    urls = ("http://127.0.0.1:8080/", "http://192.0.2.7:8080/")  # a machine with one more address
    web.announce(web.Served(urls, frozenset()), "0.0.0.0", "/camera/image_raw")
    expected = (
        "fastsam_web: open http://127.0.0.1:8080/ or http://192.0.2.7:8080/ (camera image from /camera/image_raw)\n"
    )
    assert capsys.readouterr().out == expected


def test_on_every_interface_the_urls_are_loopback_first_then_the_hostnames_addresses():
    """The real resolver: this machine's addresses, without an IPv6 scope, loopback first."""
    import socket

    try:
        resolved = {info[4][0].split("%")[0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except socket.gaierror:  # a host name that does not resolve: loopback only
        resolved = set()
    urls = web.Served.of("0.0.0.0", 8080).urls
    assert urls[0] == "http://127.0.0.1:8080/"
    assert set(urls) == {"http://127.0.0.1:8080/"} | {f"http://{web.url_host(a)}:8080/" for a in resolved}


def test_the_machines_addresses_are_ordered_loopback_then_ipv4_then_ipv6_and_scopes_dropped(monkeypatch):
    """A resolver answer this machine does not give (several families, a scoped link-local address),
    for the machine's own host name only."""
    import socket

    answer = [("fe80::1%eth0", 0, 0, 2), ("10.0.0.9",), ("::1", 0, 0, 0), ("10.0.0.10",), ("10.0.0.9",)]
    hostname = socket.gethostname()

    def resolve(host, port, proto=0):
        return [(0, 0, proto, "", a) for a in answer] if host == hostname else []

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    assert web.machine_addresses() == ["127.0.0.1", "10.0.0.9", "10.0.0.10", "::1", "fe80::1"]

    def unresolvable(host, port, proto=0):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)
    assert web.machine_addresses() == ["127.0.0.1"]


def test_a_named_host_is_served_as_itself_and_answers_loopback_names_but_not_the_machines_name():
    served = web.Served.of("192.0.2.7", 8080)
    assert served.urls == ("http://192.0.2.7:8080/",)
    assert served.hosts == {"192.0.2.7:8080", "127.0.0.1:8080", "localhost:8080", "[::1]:8080"}
    assert web.Served.of("fd00::5", 8080).urls == ("http://[fd00::5]:8080/",)


def test_a_served_port_80_also_answers_a_host_without_port():
    assert web.Served.of("127.0.0.1", 80).hosts == {
        "127.0.0.1:80",
        "localhost:80",
        "[::1]:80",
        "127.0.0.1",
        "localhost",
        "[::1]",
    }
    assert "127.0.0.1" not in web.Served.of("127.0.0.1", 8080).hosts


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--port", "0"], "argument --port: must be within 1..65535, got 0"),
        (["--port", "65536"], "argument --port: must be within 1..65535, got 65536"),
        (["--jpeg-quality", "0"], "argument --jpeg-quality: must be within 1..100, got 0"),
        (["--jpeg-quality", "101"], "argument --jpeg-quality: must be within 1..100, got 101"),
        (["--service-timeout", "0"], "argument --service-timeout: must be in (0, inf], got '0'"),
        (["--service-timeout", "inf"], "argument --service-timeout: must be a finite number, got 'inf'"),
        (["--node", "a b"], "not a valid ROS name"),
    ],
)
def test_web_command_lines_out_of_range_arerefused(argv, reason, refused):
    error = refused(web.arguments, argv)
    assert error.startswith("fastsam_web: ") and reason in error


def test_a_camera_name_is_checked_as_part_of_the_topics_name(refused):
    assert web.arguments(["--camera", "front"]).camera == "front"
    assert "'/fastsam/a b/debug_image', not a valid ROS name" in refused(web.arguments, ["--camera", "a b"])


def test_the_options_tables_of_the_usage_page_are_the_tools_own():
    """docs/USAGE.md lists every option, default and help text of the three tools as --help gives them."""
    from test_support import tool_options

    assert tool_options.render_tables() in tool_options.USAGE_PATH.read_text(), "python -m test_support.tool_options"


def test_web_limits_edges_are_taken():
    args = web.arguments(["--port", "65535", "--jpeg-quality", "100", "--service-timeout", "0.5"])
    assert (args.port, args.jpeg_quality, args.service_timeout) == (65535, 100, 0.5)
    assert web.arguments(["--port", "1", "--jpeg-quality", "1"]).port == 1


def test_web_requests_are_limited_as_the_node_limits_them_by_default():
    most = default_of("max_prompt_points")
    points = {"points": [[1, 2]] * most, "labels": [1] * most}
    assert len(web.parse_point_request(points)[0]) == most
    with pytest.raises(web.RequestError, match="max_prompt_points") as error:
        web.parse_point_request({"points": [[1, 2]] * (most + 1), "labels": [1] * (most + 1)})
    assert error.value.status == 400
    assert web.MAX_BODY_BYTES == 4096 + max(128 * most, 12 * default_of("max_text_length")) == 16896
    assert web.MAX_CONNECTIONS == 64
    edge = web.MAX_COORDINATE
    assert web.parse_box_request({"box": [-edge, -edge, edge, edge]}) == (-edge, -edge, edge, edge)
    with pytest.raises(web.RequestError, match="outside"):
        web.parse_box_request({"box": [0, 0, edge * 1.5, 1]})


def test_web_requests_become_the_prompt_services_requests():
    point = web.service_request("point", b'{"points": [[3, 4.5], [7, 8]], "labels": [1, 0]}')
    assert [(p.x, p.y) for p in point.points] == [(3.0, 4.5), (7.0, 8.0)] and list(point.labels) == [1, 0]
    box = web.service_request("box", b'{"box": [1, 2, 30, 40]}')
    assert [(b.x1, b.y1, b.x2, b.y2) for b in box.boxes] == [(1.0, 2.0, 30.0, 40.0)]
    text = web.service_request("text", b'{"text": "  a bus "}')
    assert (list(text.texts), text.top_k, text.backend) == (["a bus"], 1, "")
    for raw, message in (
        (b"[1, 2]", "request body must be a JSON object"),
        (b"\xff", "request body is not UTF-8"),
        (b"{", "request body is not valid JSON"),
        (b"[" * 100_000, "request body is nested too deeply"),
    ):
        with pytest.raises(web.RequestError) as error:
            web.service_request("box", raw)
        assert (error.value.status, str(error.value)) == (400, message)


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ([1, 2, 3], "'box' must be [x1, y1, x2, y2]"),
        ("1, 2, 3, 4", "'box' must be [x1, y1, x2, y2]"),
        ([1, 2, 1, 5], "box needs x1 < x2 and y1 < y2, got [1.0, 2.0, 1.0, 5.0]"),
        ([1, 2, 5, 2], "box needs x1 < x2 and y1 < y2, got [1.0, 2.0, 5.0, 2.0]"),
        ([1, "2", 5, 6], "box coordinate must be a finite number, got '2'"),
    ],
)
def test_a_box_that_is_not_one_says_why(box, message):
    with pytest.raises(web.RequestError) as error:
        web.parse_box_request({"box": box})
    assert (error.value.status, str(error.value)) == (400, message)


POINTS_MUST = "'points' must be a non-empty list of [x, y] pairs"
LABELS_MUST = "'labels' must be a list with one label (1 foreground, 0 background) per point"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"labels": [1]}, POINTS_MUST),
        ({"points": [], "labels": []}, POINTS_MUST),
        ({"points": [1, 2], "labels": [1, 1]}, "point 0 must be an [x, y] pair, got 1"),
        ({"points": [[1, 2]], "labels": 1}, LABELS_MUST),
        ({"points": [[1, 2]], "labels": [1, 0]}, LABELS_MUST),
        ({"points": [[1, 2], [3, 4, 5]], "labels": [1, 1]}, "point 1 must be an [x, y] pair, got [3, 4, 5]"),
        ({"points": [[1, 2], [3, "4"]], "labels": [1, 1]}, "point 1 y must be a finite number, got '4'"),
        ({"points": [[1e9, 2]], "labels": [1]}, "point 0 x 1000000000.0 is outside -1e+06..1e+06 pixels"),
        ({"points": [[10**400, 2]], "labels": [1]}, "point 0 x is too large: 100000000000000000...0000000000000000000"),
        ({"points": [[1, float("-inf")]], "labels": [1]}, "point 0 y must be a finite number, got -inf"),
        ({"points": [[1, 2]], "labels": [2]}, "labels must be the integers 1 (foreground) or 0 (background)"),
        ({"points": [[1, 2]], "labels": [True]}, "labels must be the integers 1 (foreground) or 0 (background)"),
    ],
)
def test_points_that_are_not_a_prompt_say_why(body, message):
    with pytest.raises(web.RequestError) as error:
        web.parse_point_request(body)
    assert (error.value.status, str(error.value)) == (400, message)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"text": ""}', "'text' must be a non-empty string, e.g. \"bus\""),
        (b'{"text": "   "}', "'text' must be a non-empty string, e.g. \"bus\""),
        (b'{"text": 5}', "'text' must be a non-empty string, e.g. \"bus\""),
        (b'{"text": "bus \\ud800"}', "'text' holds an unpaired surrogate (\\ud800-\\udfff): not a character"),
    ],
)
def test_a_text_that_is_not_one_says_why(raw, message):
    with pytest.raises(web.RequestError) as error:
        web.service_request("text", raw)
    assert (error.value.status, str(error.value)) == (400, message)


def test_web_values_in_messages_are_checked_as_numbers():
    for value in (True, "1", None, float("inf"), 10**400):
        with pytest.raises(web.RequestError):
            web.parse_box_request({"box": [value, 0, 5, 5]})
    assert web.parse_box_request({"box": [0.1, 0, 5, 5]})[0] == pytest.approx(0.1, rel=1e-7)
    assert web.parse_box_request({"box": [0.1, 0, 5, 5]})[0] != 0.1, "as the float32 message field holds it"


# fastsam_record


def _check_paths(output, video=None, force=False) -> None:
    record._check_paths(record.OneLineParser(prog="fastsam_record"), output, video, force)


def test_a_recording_never_replaces_an_existing_file_without_force(tmp_path, refused):
    existing = tmp_path / "run.mcap"
    existing.write_bytes(b"earlier run")
    message = refused(_check_paths, existing)
    assert f"output: '{existing}' already exists; use --force to replace it" in message
    dangling = tmp_path / "link.mcap"
    dangling.symlink_to(tmp_path / "nowhere")
    assert "already exists" in refused(_check_paths, dangling)
    assert "--video: " in refused(_check_paths, tmp_path / "new.mcap", existing)
    _check_paths(existing, force=True)
    _check_paths(tmp_path / "new.mcap", tmp_path / "new.mp4")
    with pytest.raises(record.RecordError, match="already exists; use --force"):
        record.OutputFile(existing, force=False)
    assert existing.read_bytes() == b"earlier run"


def test_a_forced_recording_replaces_the_file_only_when_complete(tmp_path):
    existing = tmp_path / "run.mcap"
    existing.write_bytes(b"earlier run")
    output = record.OutputFile(existing, force=True)
    try:
        assert output.path != existing and output.path.parent == tmp_path
        assert output.path.name.startswith(record.HIDDEN_PREFIX)
        with output.open() as stream:
            stream.write(b"new run")
        assert existing.read_bytes() == b"earlier run"
        output.commit()
    finally:
        output.release()
    assert existing.read_bytes() == b"new run" and os.listdir(tmp_path) == ["run.mcap"]


def test_recording_paths_that_cannot_be_written_are_refused_first(tmp_path, refused):
    def refusal(*paths: Path) -> str:
        return refused(_check_paths, *paths).removeprefix("fastsam_record: error: ").removesuffix(" (see --help)\n")

    assert refusal(tmp_path / "missing" / "run.mcap") == f"output: folder '{tmp_path / 'missing'}' does not exist"
    assert refusal(tmp_path) == f"output: '{tmp_path}' is a folder"
    assert refusal(tmp_path / "a.mcap", tmp_path / "missing" / "a.mp4") == (
        f"--video: folder '{tmp_path / 'missing'}' does not exist"
    )
    assert refusal(tmp_path / "a.mcap", tmp_path) == f"--video: '{tmp_path}' is a folder"
    (tmp_path / "sub").mkdir()
    same = tmp_path / "sub" / ".." / "a.mcap"
    assert refusal(tmp_path / "a.mcap", same) == "--video must be another file than the output"


def test_recorded_topics_are_the_cameras_outputs():
    names = ("instances", "selection", "obstacles", "debug_image")
    assert record.output_topics("fastsam", "") == {name: f"/fastsam/{name}" for name in names}
    assert record.output_topics("robot", "front") == {name: f"/robot/front/{name}" for name in names}


# fastsam_play


def test_the_player_defaults():
    args = play.command_line().parse_args(["clip.mp4"])
    assert (args.source, args.topic, args.frame_id) == ("clip.mp4", "/camera/image_raw", "camera")
    assert (args.rate, args.limit, args.loop, args.no_node) == (None, None, False, False)
    assert (args.wait, args.subscribers, args.linger, args.param) == (180.0, 1, 2.0, [])


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--rate", "0"], "--rate: must be in [0.001, 1000]"),
        (["--rate", "1000.5"], "--rate: must be in [0.001, 1000]"),
        (["--rate", "nan"], "must be a finite number"),
        (["--wait", "0"], "--wait: must be in (0, 86400]"),
        (["--wait", "86401"], "--wait: must be in (0, 86400]"),
        (["--linger", "-1"], "--linger: must be in [0, 86400]"),
        (["--subscribers", "-1"], "argument --subscribers: must be 0 or more, got -1"),
        (["--limit", "0"], "argument --limit: must be 1 or more, got 0"),
        (["--topic", "a b"], "not a valid ROS topic name"),
    ],
)
def test_player_command_lines_out_of_range_arerefused(argv, reason, refused):
    assert reason in refused(play.command_line().parse_args, ["clip.mp4", *argv])


def test_player_limits_edges_are_taken():
    args = play.command_line().parse_args(
        ["x", "--rate", "0.001", "--wait", "86400", "--linger", "0", "--subscribers", "0"]
    )
    assert (args.rate, args.wait, args.linger, args.subscribers) == (0.001, 86400.0, 0.0, 0)
    assert play.command_line().parse_args(["x", "--rate", "1000", "--limit", "1"]).limit == 1


def test_the_player_skips_frames_over_the_nodes_pixel_limit():
    assert play.node_max_pixels([]) == default_of("max_pixels") == 7680 * 4320
    assert play.node_max_pixels(["conf:=0.5", " max_pixels :=100", "max_pixels:=2000"]) == 2000, "the last one"
    with pytest.raises(play.ParameterError, match="expected an integer"):
        play.node_max_pixels(["max_pixels:=lots"])
    with pytest.raises(play.ParameterError):
        play.node_max_pixels(["max_pixels:=0"])


def test_number_arguments_name_their_range():
    parse = command_line.number_in(1.0, 2.0, low_allowed=False)
    assert parse("2") == 2.0 and parse("1.5") == 1.5
    for text in ("1", "2.01", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


def test_the_node_log_is_created_at_once_or_refused_with_the_reason(tmp_path, refused):
    log = tmp_path / "node.log"
    assert play.command_line().parse_args(["x", "--node-log", str(log)]).node_log == str(log)
    assert log.is_file(), "created while the command line is read"
    missing = tmp_path / "missing" / "node.log"
    message = refused(play.command_line().parse_args, ["x", "--node-log", str(missing)])
    assert message.endswith(f"argument --node-log: cannot write '{missing}': No such file or directory (see --help)\n")
    assert f"cannot write '{tmp_path}': " in refused(
        play.command_line().parse_args, ["x", "--node-log", str(tmp_path)]
    ), "a folder"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("two", "expected an integer, got 'two'"),
        ("-1", "must be 0 or more, got -1"),
        ("1_0", "expected an integer, got '1_0'"),
        ("\u0663", "expected an integer, got '\u0663'"),
        ("1.0", "expected an integer, got '1.0'"),
    ],
)
def test_player_subscriber_counts_that_are_not_plain_non_negative_integers_are_refused(value, reason, refused):
    """The player's --subscribers takes integers as the exporter's --threads does, in ASCII digits only."""
    error = refused(play.command_line().parse_args, ["x.mp4", "--subscribers", value])
    assert error == f"fastsam_play: error: argument --subscribers: {reason} (see --help)\n", error


def test_player_subscriber_counts_at_the_edge_are_taken():
    assert play.command_line().parse_args(["x.mp4", "--subscribers", "0"]).subscribers == 0
    assert play.command_line().parse_args(["x.mp4", "--subscribers", " +3 "]).subscribers == 3


def test_the_players_warnings_go_to_stderr_above_the_progress_bar(capsys):
    play.warn("frame 3 skipped")
    assert capsys.readouterr() == ("", "fastsam_play: frame 3 skipped\n")


class ClosedPipe:
    """A stream whose reader has gone: every write and flush fails as a closed pipe does."""

    encoding = "utf-8"

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_stream_whose_reader_has_gone_swallows_what_is_written():
    stream = play.UnbreakableStream(ClosedPipe())
    assert stream.encoding == "utf-8", "anything else is the stream's own"
    assert stream.write("frame 1\n") == len("frame 1\n")
    assert stream.stream.name == os.devnull and stream.write("frame 2\n") == len("frame 2\n")
    flushing = play.UnbreakableStream(ClosedPipe())
    flushing.flush()
    assert flushing.stream.name == os.devnull
    assert play.UnbreakableStream(None).stream.name == os.devnull, "no stream at all (a process without stderr)"
    assert play.UnbreakableStream(None).write("x") == 1


# fastsam_export


def test_the_exporter_defaults_are_the_nodes():
    args = export.command_line().parse_args([])
    assert (args.model, args.precision, args.threads) == (default_of("model"), "int8", default_of("inference_threads"))
    assert export.PRECISIONS == ("f32", "bf16", "int8")
    edges = export.command_line().parse_args(["--threads", "256", "--precision", "bf16", "--model", "x.pt"])
    assert (edges.threads, edges.precision, edges.model) == (256, "bf16", "x.pt")


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--threads", "-1"], "argument --threads: inference_threads: must be in [0, 256], got -1"),
        (["--threads", "257"], "argument --threads: inference_threads: must be in [0, 256], got 257"),
        (["--threads", "two"], "argument --threads: expected an integer, got 'two'"),
        (["--threads", "1_0"], "argument --threads: expected an integer, got '1_0'"),
        (["--threads", "\u0663"], "argument --threads: expected an integer, got '\u0663'"),
        (["--precision", "auto"], "argument --precision: invalid choice: 'auto' (choose from "),
    ],
)
def test_exporter_command_lines_out_of_range_are_refused(argv, reason, refused):
    error = refused(export.command_line().parse_args, argv)
    assert error.startswith(f"fastsam_export: error: {reason}") and error.endswith(" (see --help)\n"), error


def test_the_exporter_says_why_weights_cannot_be_exported(tmp_path, capsys):
    missing = tmp_path / "missing.pt"
    assert export.main(["--model", str(missing), "--precision", "f32"]) == 2
    assert capsys.readouterr().err == (
        f"fastsam_export: error: model weights not found: '{missing}' is not a readable file\n"
    )


def test_the_exporter_says_which_sample_video_int8_needs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FASTSAM_ROS_VIDEOS", str(tmp_path))
    assert export.main([]) == 2, "int8 by default, calibrated on the sample videos"
    assert capsys.readouterr().err == (
        f"fastsam_export: error: sample video 'vtest.avi' not found in {tmp_path}: run `make setup` to fetch it\n"
    )


# the node client the tools and tests share


def test_an_isolated_graph_stays_on_this_host_and_keeps_a_private_domain(monkeypatch):
    for name in ("PYTHONUNBUFFERED", "RCUTILS_LOGGING_BUFFERED_STREAM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ROS_DOMAIN_ID", "37")
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env = node_client.isolated_ros_env()
    assert (env["ROS_DOMAIN_ID"], env["ROS_AUTOMATIC_DISCOVERY_RANGE"]) == ("37", "LOCALHOST"), "kept"
    assert (env["PYTHONUNBUFFERED"], env["RCUTILS_LOGGING_BUFFERED_STREAM"]) == ("1", "0")
    assert "PYTHONUNBUFFERED" not in os.environ, "a copy: this process's environment is left alone"
    assert node_client.isolated_ros_env(5)["ROS_DOMAIN_ID"] == "5", "a domain asked for"
    monkeypatch.setenv("PYTHONUNBUFFERED", "0")
    assert node_client.isolated_ros_env()["PYTHONUNBUFFERED"] == "0", "a setting of the user's is kept"
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET")  # a shared graph: a domain of its own
    drawn: list[tuple[int, int]] = []
    monkeypatch.setattr(node_client.random, "randint", lambda low, high: drawn.append((low, high)) or 64)
    env = node_client.isolated_ros_env()
    assert (env["ROS_DOMAIN_ID"], env["ROS_AUTOMATIC_DISCOVERY_RANGE"], drawn) == ("64", "LOCALHOST", [(1, 100)])


def test_a_wait_that_times_out_names_what_it_waited_for():
    spins = []
    with pytest.raises(TimeoutError) as waited:
        node_client.wait_until(lambda: False, 0.05, lambda: spins.append(time.sleep(0.01)), "the answer")
    assert str(waited.value) == "timed out after 0 s waiting for the answer" and spins


# names that hold a newline or a terminal escape, in every tool's messages


def test_a_message_keeps_to_one_line_whatever_a_name_holds():
    """Every character that ends a line (str.splitlines) or is a control is escaped; all others are kept."""
    for code in range(0x3000):  # every line break and control character is below U+3000
        char = chr(code)
        if 0xD800 <= code < 0xE000:
            continue
        shown = command_line.one_line(f"a{char}b")
        if len(f"a{char}b".splitlines()) > 1 or unicodedata.category(char) == "Cc":
            assert shown == f"a{ascii(char)[1:-1]}b", hex(code)
        else:
            assert shown == f"a{char}b", hex(code)


def test_the_tools_refusals_show_a_newline_in_a_name_as_an_escape(tmp_path, refused, capsys):
    folder = tmp_path / "a\nb"
    error = refused(_check_paths, folder / "run.mcap")
    assert error == f"fastsam_record: error: output: folder '{tmp_path}/a\\nb' does not exist (see --help)\n", error
    error = refused(play.command_line().parse_args, ["x.mp4", "--topic", "/a\u2028b"])
    assert "'/a\\u2028b' is not a valid ROS topic name" in error
    assert export.main(["--model", str(folder / "x.pt"), "--precision", "f32"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"'{tmp_path}/a\\nb/x.pt'" in error, error


def test_the_web_tools_warnings_show_a_control_character_as_an_escape(capsys):
    web.ThrottledWarning().warn("camera\rframe\x9b2J")
    assert capsys.readouterr().err == "fastsam_web: camera\\rframe\\x9b2J\n"


# counts and numbers, read by the same types in every tool


def _player(argv: list[str]) -> argparse.Namespace:
    return play.command_line().parse_args(["x.mp4", *argv])


def _recorder(argv: list[str]) -> argparse.Namespace:
    return record.command_line().parse_args(["run.mcap", *argv])


@pytest.mark.parametrize(
    ("parse", "option"),
    [
        (_player, "--limit"),
        (_recorder, "--frames"),
        (_recorder, "--jpeg-quality"),
        (web.arguments, "--port"),
        (web.arguments, "--jpeg-quality"),
    ],
)
def test_every_tools_counts_are_plain_integers(parse, option, refused):
    """int() alone would take '1_0' as 10 and Arabic-Indic digits; no count of any tool does."""
    for text in ("1_0", "\u0661\u0660", "10.0", "ten"):
        assert refused(parse, [option, text]).endswith(f"{option}: expected an integer, got '{text}' (see --help)\n")
    assert getattr(parse([option, " 10 "]), option[2:].replace("-", "_")) == 10


def test_integer_ranges_include_both_ends_and_name_the_value():
    quality, count = command_line.integer_in(1, 100), command_line.integer_in(2)
    assert (quality("1"), quality("100"), count("2"), count("9" * 30)) == (1, 100, 2, int("9" * 30))
    for parse, text, reason in (
        (quality, "0", "must be within 1..100, got 0"),
        (quality, "101", "must be within 1..100, got 101"),
        (count, "1", "must be 2 or more, got 1"),
    ):
        with pytest.raises(argparse.ArgumentTypeError) as refusal:
            parse(text)
        assert str(refusal.value) == reason


def test_every_tools_numbers_are_written_in_ascii_digits(refused):
    """float() alone would take '1_0' as 10 and Arabic-Indic digits; the options that take seconds or
    rates take numbers as people write them, exponent and leading point included."""
    parsers = [
        (_player, "--rate"),
        (_recorder, "--duration"),
        (_recorder, "--video-fps"),
        (web.arguments, "--service-timeout"),
    ]
    for parse, option in parsers:
        for text, reason in (
            ("1_0", "expected a number in ASCII digits"),
            ("\u0661\u0660", "expected a number in ASCII digits"),
            ("0x10", "expected a number"),
        ):
            error = refused(parse, [option, text])
            assert error.endswith(f"argument {option}: {reason}, got '{text}' (see --help)\n"), error
        name = option[2:].replace("-", "_")
        for text, value in ((" 2.5 ", 2.5), (".5", 0.5), ("5.", 5.0), ("+1e1", 10.0), ("2E-1", 0.2)):
            assert getattr(parse([option, text]), name) == value, (option, text)
