"""Alertmanager label matchers and silences, checked against Alertmanager itself: its parser tests
(pkg/labels/parse_test.go, silence/silence_test.go) ported, Debian's `amtool` printing how it parsed the
same matcher strings, and a real `prometheus-alertmanager` accepting or refusing the same silences."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.alerting.matchers import (
    Matcher,
    format_matchers,
    parse_matcher,
    parse_matcher_list,
    parse_matchers,
)
from agent.alerting.silences import (
    Silence,
    can_update,
    expire,
    silence_from_request,
    silenced_by,
)
from tests.conftest import free_port, require_binary

NOW = 1_700_000_000.0


def triples(matchers: list[Matcher]) -> list[tuple[str, str, str]]:
    return [(m.name, m.op, m.value) for m in matchers]


# ---------------------------------------------------------------------------------------------------------
# Alertmanager's pkg/labels/parse_test.go (TestMatchers), in v0.25's semantics: `job=` is a matcher for the
# empty value there (later releases refuse it; the installed amtool 0.25 accepts it, see the oracle below).

PARSE_OK = [
    ('{foo="bar"}', [("foo", "=", "bar")]),
    ('{foo=~"bar.*"}', [("foo", "=~", "bar.*")]),
    ('{foo!="bar"}', [("foo", "!=", "bar")]),
    ('{foo!~"bar.*"}', [("foo", "!~", "bar.*")]),
    ('{foo="bar", baz!="quux"}', [("foo", "=", "bar"), ("baz", "!=", "quux")]),
    ('{foo="bar", baz!~"quux.*"}', [("foo", "=", "bar"), ("baz", "!~", "quux.*")]),
    ('{foo="bar",baz!~".*quux", derp="wat"}', [("foo", "=", "bar"), ("baz", "!~", ".*quux"), ("derp", "=", "wat")]),
    ('{foo="bar", baz!="quux", derp="wat"}', [("foo", "=", "bar"), ("baz", "!=", "quux"), ("derp", "=", "wat")]),
    ('{foo="bar", baz!~".*quux.*", derp="wat"}',
     [("foo", "=", "bar"), ("baz", "!~", ".*quux.*"), ("derp", "=", "wat")]),
    ('{foo="bar", instance=~"some-api.*"}', [("foo", "=", "bar"), ("instance", "=~", "some-api.*")]),
    ('{foo=""}', [("foo", "=", "")]),
    ('{foo="bar,quux", job="job1"}', [("foo", "=", "bar,quux"), ("job", "=", "job1")]),
    ('{foo = "bar", dings != "bums", }', [("foo", "=", "bar"), ("dings", "!=", "bums")]),
    ("foo=bar,dings!=bums", [("foo", "=", "bar"), ("dings", "!=", "bums")]),
    (r"""{quote="She said: \"Hi, ladies! That's gender-neutral…\""}""",
     [("quote", "=", "She said: \"Hi, ladies! That's gender-neutral…\"")]),
    ('statuscode=~"5.."', [("statuscode", "=~", "5..")]),
    ("tricky=~~~", [("tricky", "=~", "~~")]),
    (r"trickier==\\=\=\"", [("trickier", "=", r'=\=\="')]),
    (r'contains_quote != "\"" , contains_comma !~ "foo,bar" , ',
     [("contains_quote", "!=", '"'), ("contains_comma", "!~", "foo,bar")]),
    ("job=", [("job", "=", "")]),
    # Beyond the Go test: what the parser's doc promises.
    ('severity=~"crit|warn"', [("severity", "=~", "crit|warn")]),
    ("  severity  =~  crit|warn  ", [("severity", "=~", "crit|warn")]),
    ('a="line\\nbreak\\\\"', [("a", "=", "line\nbreak\\")]),
    ('a="unknown \\q escape"', [("a", "=", "unknown \\q escape")]),
    ("a=ends with backslash\\", [("a", "=", "ends with backslash\\")]),
    ("le:gacy:name=x", [("le:gacy:name", "=", "x")]),
    ('a=" spaces kept inside quotes "', [("a", "=", " spaces kept inside quotes ")]),
    ("", []),
    ("{}", []),
]

PARSE_BAD = [
    ('job="value', 'matcher value contains unescaped double quote: "value'),
    ('job=value"', 'matcher value contains unescaped double quote: value"'),
    (r'trickier==\\=\=\""', r'matcher value contains unescaped double quote: =\\=\=\""'),
    ('contains_unescaped_quote = foo"bar', 'matcher value contains unescaped double quote: foo"bar'),
    ('{invalid-name = "valid label"}', 'bad matcher format: invalid-name = "valid label"'),
    ('{foo=~"invalid[regexp"}', "error parsing regexp: missing closing ]: `[regexp)$`"),
    (r'"{foo=\"bar"}', r'bad matcher format: "{foo=\"bar"'),
    (r'"foo=\"bar"', r'bad matcher format: "foo=\"bar"'),
    (r'"foo=\"bar\""', r'bad matcher format: "foo=\"bar\""'),
    (r'"foo=\"bar\"', r'bad matcher format: "foo=\"bar\"'),
    (r'"{foo=\"bar\"}"', r'bad matcher format: "{foo=\"bar\"}"'),
    ('"foo="bar""', 'bad matcher format: "foo="bar""'),
    # Beyond the Go test.
    ('a="b",,c="d"', "bad matcher format: "),
    ('a==~"b"', None),  # `=` then the value `=~"b"`, whose inner quote is unescaped
    ("a", "bad matcher format: a"),
    ('{a="1"},b="2"}', 'matcher value contains unescaped double quote: "1"}'),  # only one brace is trimmed
    ('a=~"(?=x)"', "error parsing regexp: invalid or unsupported Perl syntax: `"),
    ('a="\ud800"', 'matcher value not valid UTF-8: "\ud800"'),
]


@pytest.mark.parametrize(("text", "want"), PARSE_OK, ids=[c[0] or "empty" for c in PARSE_OK])
def test_parse_matchers_as_alertmanager(text: str, want: list[tuple[str, str, str]]) -> None:
    assert triples(parse_matchers(text)) == want


@pytest.mark.parametrize(("text", "message"), PARSE_BAD, ids=[c[0] for c in PARSE_BAD])
def test_bad_matchers_are_refused_with_alertmanagers_message(text: str, message: str | None) -> None:
    with pytest.raises(ValueError) as caught:
        parse_matchers(text)
    if message is not None:
        assert str(caught.value).startswith(message), str(caught.value)


def test_parse_matcher_takes_exactly_one() -> None:
    assert triples([parse_matcher('severity=~"crit|warn"')]) == [("severity", "=~", "crit|warn")]
    with pytest.raises(ValueError, match="unescaped double quote"):
        parse_matcher('a="b",c="d"')  # a list is parse_matchers' job
    with pytest.raises(ValueError, match="unknown match operator '=='"):
        Matcher("a", "==", "b")  # type: ignore[arg-type]


def test_matcher_list_names_the_bad_item_and_sorts() -> None:
    got = parse_matcher_list(['{b="2", a!="1"}', 'a=~"x"'])
    assert str(format_matchers(got)) == '{a!="1",a=~"x",b="2"}'
    with pytest.raises(ValueError, match=r"""invalid matcher 'x=~"\["': error parsing regexp"""):
        parse_matcher_list(['a="b"', 'x=~"["'])


def test_printing_round_trips() -> None:
    for text, _ in PARSE_OK:
        matchers = parse_matchers(text)
        assert triples(parse_matchers(format_matchers(matchers))) == triples(matchers)
        for m in matchers:
            assert triples([parse_matcher(str(m))]) == [(m.name, m.op, m.value)]


# ---------------------------------------------------------------------------------------------------------
# Matching: anchored RE2, a missing label is the empty string.

def matches(text: str, labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in parse_matchers(text))


def test_equality_and_missing_labels() -> None:
    assert matches('severity="critical"', {"severity": "critical"})
    assert not matches('severity="critical"', {"severity": "Critical"})
    assert matches('severity=""', {})
    assert matches('severity=""', {"severity": ""})
    assert not matches('severity=""', {"severity": "x"})
    assert matches('severity!="critical"', {})
    assert not matches('severity!=""', {})
    assert matches('severity!~"crit.*"', {"alertname": "X"})
    assert not matches('severity=~".+"', {})
    assert matches('severity=~".*"', {})


def test_regexes_are_anchored_go_regexes() -> None:
    assert matches('job=~"node"', {"job": "node"})
    assert not matches('job=~"node"', {"job": "node_exporter"})
    assert not matches('job=~"node"', {"job": "my-node"})
    assert matches('job=~"node|db"', {"job": "db"})  # the alternation is inside the anchors
    assert matches('severity=~"crit|warn"', {"severity": "warn"})
    assert not matches('severity=~"crit|warn"', {"severity": "warning"})
    assert matches('job!~"node|db"', {"job": "web"})
    assert not matches('job!~"node|db"', {"job": "node"})
    # Go's `$` is the end of the text, never before a final newline (Python's `$` would match).
    assert not matches('a=~"x$"', {"a": "x\n"})
    assert not matches('a=~"x"', {"a": "x\n"})
    # Go's \d is ASCII: Arabic-Indic digits are not digits to Alertmanager.
    assert matches('code=~"\\\\d{3}"', {"code": "503"})
    assert not matches('code=~"\\\\d{3}"', {"code": "\u0665\u0660\u0663"})
    assert matches('a=~"(?i)disk.*"', {"a": "DISKFULL"})
    assert matches('a=~"[[:alpha:]]+"', {"a": "abc"})
    assert matches('a=~"x{,2}"', {"a": "x{,2}"})  # a literal in Go
    with pytest.raises(ValueError, match="error parsing regexp"):
        parse_matcher('a=~"x(?<=y)"')
    with pytest.raises(ValueError, match="error parsing regexp"):
        parse_matcher('a=~"(x)\\\\1"')  # no backreferences in RE2


def test_pathological_regex_is_linear() -> None:
    started = time.monotonic()
    assert not matches('a=~"(x+x+)+y"', {"a": "x" * 5000})
    assert time.monotonic() - started < 1.0


def test_api_objects() -> None:
    for m in parse_matchers('a="1",b!="2",c=~"3",d!~"4"'):
        assert Matcher.from_api(m.to_api()) == m
    assert Matcher.from_api({"name": "a", "value": "x"}).op == "="  # isEqual defaults to true
    assert Matcher.from_api({"name": "a", "value": "x", "isRegex": True, "isEqual": False}).op == "!~"
    with pytest.raises(ValueError, match="string name"):
        Matcher.from_api({"name": "a"})
    with pytest.raises(ValueError, match="booleans"):
        Matcher.from_api({"name": "a", "value": "b", "isRegex": "yes"})


# ---------------------------------------------------------------------------------------------------------
# amtool 0.25 as the oracle of parsing: `amtool config routes` prints each route's matchers as parsed.

ORACLE_STRINGS = [
    *(text for text, _ in PARSE_OK if text.strip("{} ")),
    'service=~"db|database", team!~"day.*"',
    "unquoted=value with spaces  ",
    'unicode="héllo wörld ✓"',
    'tab="a\tb"',
    'newline="a\\nb"',
    'backslashes="\\\\\\\\"',
    'regex=~"^(?:a|b)$"',
    'x=~"[[:digit:]]+\\\\.\\\\d*"',
    '{env="prod",}',
    "  spaced   !=   \"  inner  \"  ",
    "a=b=c",
    "a!=~",
    'a=~"a,b",b="{x}"',
    'empty_re=~""',
    'a="x\\\\,y",b="z"',
]

ORACLE_BAD = [
    *(text for text, _ in PARSE_BAD if "\ud800" not in text),
    'a="b" junk"',
    'bad-name="x"',
    'a=~"*"',
    'a=~"x{1001}"',
    'a=~"\\\\8"',
    'a="x\\,",b="y"',  # the comma inside quotes keeps the backslash pending: the next quote is escaped
    'a=x\\,"q=1"',
]


def yaml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


async def run(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_parsing_agrees_with_amtool(tmp_path: Path) -> None:
    amtool = require_binary("amtool")
    lines = ["route:", "  receiver: default", "  routes:"]
    for i, text in enumerate(ORACLE_STRINGS):
        lines += [f"    - receiver: r{i}", f"      matchers: [{yaml_string(text)}]"]
    lines += ["receivers:", "  - name: default", *(f"  - name: r{i}" for i in range(len(ORACLE_STRINGS)))]
    config = tmp_path / "am.yml"
    config.write_text("\n".join(lines) + "\n")
    code, out = await run(amtool, "config", "routes", "show", f"--config.file={config}")
    assert code == 0, out
    printed = dict((m.group(2), m.group(1)) for m in re.finditer(r"── (\{.*\})  receiver: (r\d+)$", out, re.M))
    assert len(printed) == len(ORACLE_STRINGS), out
    for i, text in enumerate(ORACLE_STRINGS):
        assert format_matchers(parse_matcher_list([text])) == printed[f"r{i}"], text


def same_message(ours: str, theirs: str) -> bool:
    """Alertmanager's own words, except inside a regex error: there both say "error parsing regexp:", but
    the detail comes from Vigil's Go-regex translator, which may word it or quote the pattern differently
    (`invalid repeat count: `{1001})$`` for Go's `invalid repeat count: `{1001}``)."""
    prefix = "error parsing regexp: "
    return ours == theirs or (ours.startswith(prefix) and theirs.startswith(prefix))


async def test_refusals_agree_with_amtool(tmp_path: Path) -> None:
    amtool = require_binary("amtool")
    for i, text in enumerate(ORACLE_BAD):
        config = tmp_path / f"bad{i}.yml"
        config.write_text(
            "route:\n  receiver: d\n  routes:\n"
            f"    - receiver: d\n      matchers: [{yaml_string(text)}]\nreceivers: [{{name: d}}]\n"
        )
        code, out = await run(amtool, "check-config", str(config))
        assert code != 0, (text, out)
        with pytest.raises(ValueError) as caught:
            parse_matchers(text)
        failed = re.search(r"FAILED: (.*)", out)
        assert failed is not None, out
        assert same_message(str(caught.value), failed.group(1)), (text, str(caught.value), out)


# ---------------------------------------------------------------------------------------------------------
# Silences: silence/silence_test.go's TestValidateSilence, then states, muting, expiry and edits.

def silence(matchers: str = 'a="b"', start: float = NOW - 60, end: float = NOW + 3600, sid: str = "s1") -> Silence:
    return Silence(sid, tuple(parse_matchers(matchers)), start, end, "alice", "disk swap", NOW - 60, NOW - 60)


@pytest.mark.parametrize(
    ("matchers", "start", "end", "error"),
    [
        ([Matcher("a", "=", "b")], NOW, NOW, None),
        ([], NOW, NOW, "at least one matcher required"),
        ([Matcher("a", "=", "b"), Matcher("00", "=", "b")], NOW, NOW,
         'invalid label matcher 1: invalid label name "00"'),
        ([Matcher("a", "=", ""), Matcher("b", "=~", ".*")], NOW, NOW, "must not match the empty string"),
        ([Matcher("a", "=", "b")], NOW, NOW - 1, "end time must not be before start time"),
        ([Matcher("a", "=", "b")], 0, NOW, "invalid start timestamp"),
        ([Matcher("a", "=", "b")], NOW, 0, "invalid end timestamp"),
        ([Matcher("a:b", "=", "x")], NOW, NOW + 1, 'invalid label name "a:b"'),
        ([Matcher("a", "!=", "")], NOW, NOW + 1, None),  # negative matchers never count as matching empty
        ([Matcher("a", "!~", ".*")], NOW, NOW + 1, None),
        ([Matcher("a", "=~", "a*")], NOW, NOW + 1, "must not match the empty string"),
        ([Matcher("a", "=~", "foo|")], NOW, NOW + 1, "must not match the empty string"),
        ([Matcher("a", "=~", "a+")], NOW, NOW + 1, None),
        ([Matcher("a", "=", ""), Matcher("b", "=", "x")], NOW, NOW + 1, None),
        ([Matcher("a", "!=", "\ud800")], NOW, NOW + 1, "invalid label matcher 0: invalid label value"),
    ],
)
def test_validate_silence(matchers: list[Matcher], start: float, end: float, error: str | None) -> None:
    if error is None:
        Silence("some_id", tuple(matchers), start, end)
    else:
        with pytest.raises(ValueError, match=re.escape(error)):
            Silence("some_id", tuple(matchers), start, end)
    with pytest.raises(ValueError, match="ID missing"):
        Silence("", (Matcher("a", "=", "b"),), NOW, NOW)


def test_silence_states() -> None:
    s = silence(start=NOW, end=NOW + 10)
    assert s.state(NOW - 0.001) == "pending"
    assert s.state(NOW) == "active"  # from the start, inclusive
    assert s.state(NOW + 9.999) == "active"
    assert s.state(NOW + 10) == "expired"  # up to the end, exclusive
    assert s.to_dict(NOW)["status"] == {"state": "active"}
    assert s.to_dict(NOW)["starts_at"] == "2023-11-14T22:13:20.000Z"
    assert s.to_dict(NOW)["matchers"] == ['a="b"']


def test_silenced_by_lists_active_matching_silences() -> None:
    silences = [
        silence('alertname="DiskFull"', sid="z-disk"),
        silence('alertname=~"Disk.*", mountpoint!="/boot"', sid="a-disk-re"),
        silence('alertname="DiskFull"', start=NOW + 60, end=NOW + 7200, sid="pending"),
        silence('alertname="DiskFull"', start=NOW - 7200, end=NOW - 3600, sid="expired"),
        silence('alertname="DiskFull", severity="critical"', sid="needs-severity"),
        silence('alertname="CPU"', sid="cpu"),
    ]
    labels = {"alertname": "DiskFull", "mountpoint": "/"}
    assert silenced_by(labels, silences, NOW) == ["a-disk-re", "z-disk"]
    assert silenced_by({**labels, "mountpoint": "/boot"}, silences, NOW) == ["z-disk"]
    assert silenced_by({**labels, "severity": "critical"}, silences, NOW) == ["a-disk-re", "needs-severity", "z-disk"]
    assert silenced_by(labels, silences, NOW + 60) == ["a-disk-re", "pending", "z-disk"]
    assert silenced_by(labels, silences, NOW + 3600) == ["pending"]
    assert silenced_by({"alertname": "Load"}, silences, NOW) == []
    # A matcher on a label the alert lacks sees the empty string.
    assert silenced_by({"alertname": "X"}, [silence('team=~"ops|", alertname="X"', sid="t")], NOW) == ["t"]


def test_expire() -> None:
    active = expire(silence(), NOW)
    assert (active.starts_at, active.ends_at, active.updated_at) == (NOW - 60, NOW, NOW)
    assert active.state(NOW) == "expired"
    pending = expire(silence(start=NOW + 60), NOW)
    assert (pending.starts_at, pending.ends_at) == (NOW, NOW)
    assert pending.state(NOW) == "expired"
    with pytest.raises(ValueError, match="silence s1 already expired"):
        expire(active, NOW + 1)


def test_can_update() -> None:
    active = silence(start=NOW - 60, end=NOW + 60)
    pending = silence(start=NOW + 60, end=NOW + 120)
    assert can_update(active, silence(start=NOW - 60, end=NOW + 600), NOW)  # extend
    assert can_update(active, silence(start=NOW - 60, end=NOW), NOW)  # end now
    assert not can_update(active, silence(start=NOW - 60, end=NOW - 1), NOW)  # end in the past
    assert not can_update(active, silence(start=NOW - 30, end=NOW + 60), NOW)  # start moved
    assert not can_update(active, silence('a="c"', start=NOW - 60, end=NOW + 60), NOW)  # other matchers
    assert can_update(silence('a="b",c="d"'), silence('c="d",a="b"'), NOW)  # the same matchers, reordered
    assert can_update(pending, silence(start=NOW, end=NOW + 60), NOW)
    assert not can_update(pending, silence(start=NOW - 1, end=NOW + 60), NOW)
    assert not can_update(silence(start=NOW - 60, end=NOW - 1), silence(start=NOW - 60, end=NOW + 60), NOW)


def test_silence_from_request() -> None:
    body = {"matchers": ['severity=~"crit|warn"', 'team="db"'], "ends_at": "2023-11-15T00:00:00Z",
            "created_by": "alice", "comment": "maintenance"}
    s = silence_from_request(body, NOW, silence_id="x")
    assert (s.id, s.starts_at, s.ends_at, s.created_at, s.updated_at) == ("x", NOW, 1700006400.0, NOW, NOW)
    assert [str(m) for m in s.matchers] == ['severity=~"crit|warn"', 'team="db"']
    s = silence_from_request({**body, "matchers": '{a="b", c!="d"}', "starts_at": NOW + 10, "ends_at": NOW + 20}, NOW)
    assert triples(list(s.matchers)) == [("a", "=", "b"), ("c", "!=", "d")] and len(s.id) == 36
    s = silence_from_request({**body, "matchers": [{"name": "a", "value": "x.*", "isRegex": True}]}, NOW)
    assert triples(list(s.matchers)) == [("a", "=~", "x.*")]
    assert silence_from_request({**body, "id": "old"}, NOW).id == "old"
    assert silence_from_request({**body, "ends_at": "2023-11-15T01:00:00+01:00"}, NOW).ends_at == 1700006400.0


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"matchers": []}, "matchers is required"),
        ({"matchers": None}, "matchers is required"),
        ({"matchers": "  "}, "at least one matcher required"),
        ({"matchers": ['a=~"["']}, r"matchers\[0\]: error parsing regexp: missing closing \]"),
        ({"matchers": ['a="b"', 'bad-name="x"']}, r"matchers\[1\]: bad matcher format: bad-name"),
        ({"matchers": [{"name": "a", "value": "b", "isRegex": 1}]}, r"matchers\[0\]: .*booleans"),
        ({"matchers": [42]}, r"matchers\[0\]: expected a matcher string"),
        ({"matchers": ['a=""', 'b=~".*"']}, "at least one matcher must not match the empty string"),
        ({"matchers": ['le:x="1"']}, 'invalid label name "le:x"'),
        ({"ends_at": None}, "ends_at is required"),
        ({"ends_at": "tomorrow"}, "ends_at: 'tomorrow' is not an RFC 3339 time"),
        ({"ends_at": "2023-11-15T00:00:00"}, "has no time zone"),
        ({"ends_at": True}, "boolean"),
        ({"starts_at": NOW + 100, "ends_at": NOW + 100}, "start time must be before end time"),
        ({"starts_at": NOW - 100, "ends_at": NOW - 50}, "end time can't be in the past"),
        ({"created_by": None}, "created_by is required"),
        ({"comment": 5}, "comment is required"),
        ({"duration": "1h"}, "unknown field 'duration'"),
        ({"id": ""}, "id must be a non-empty string"),
    ],
)
def test_silence_request_errors(change: dict[str, Any], error: str) -> None:
    body = {"matchers": ['a="b"'], "ends_at": NOW + 3600, "created_by": "alice", "comment": "c", **change}
    body = {key: value for key, value in body.items() if value is not None}  # None: the key left out
    with pytest.raises(ValueError, match=error):
        silence_from_request(body, NOW)


# ---------------------------------------------------------------------------------------------------------
# A real Alertmanager as the oracle of which silences are valid.

@contextlib.asynccontextmanager
async def alertmanager(tmp_path: Path, config: str) -> AsyncIterator[str]:
    """A Debian `prometheus-alertmanager` on a free loopback port, clustering off; yields its base URL."""
    binary = require_binary("prometheus-alertmanager")
    (tmp_path / "alertmanager.yml").write_text(config)
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        binary, f"--config.file={tmp_path / 'alertmanager.yml'}", f"--storage.path={tmp_path / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
        stdout=log, stderr=log, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as session:
            while True:
                assert proc.returncode is None, (tmp_path / "alertmanager.log").read_text()
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{url}/-/ready") as resp:
                        if resp.status == 200:
                            break
                assert time.monotonic() < deadline, (tmp_path / "alertmanager.log").read_text()
                await asyncio.sleep(0.05)
        yield url
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


def am_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def obj(name: str, value: str, regex: bool = False, equal: bool = True) -> dict[str, Any]:
    return {"name": name, "value": value, "isRegex": regex, "isEqual": equal}


SILENCE_ORACLE = [
    ([obj("a", "x")], 0, 3600),
    ([obj("a", "")], 0, 3600),
    ([obj("a", "", equal=False)], 0, 3600),
    ([obj("a", ".*", regex=True)], 0, 3600),
    ([obj("a", ".*", regex=True, equal=False)], 0, 3600),
    ([obj("a", "a*", regex=True)], 0, 3600),
    ([obj("a", "a+", regex=True)], 0, 3600),
    ([obj("a", "foo|", regex=True)], 0, 3600),
    ([obj("a", "^$", regex=True)], 0, 3600),
    ([obj("a", "(?i)X", regex=True)], 0, 3600),
    ([obj("a", ""), obj("b", "y")], 0, 3600),
    ([obj("a", ""), obj("b", ".*", regex=True)], 0, 3600),
    ([obj("00", "x")], 0, 3600),
    ([obj("a:b", "x")], 0, 3600),
    ([obj("a", "[", regex=True)], 0, 3600),
    ([obj("a", "(?<=x)", regex=True)], 0, 3600),
    ([obj("a", " ")], 0, 3600),
    ([], 0, 3600),
    ([obj("a", "x")], 3600, 3600),
    ([obj("a", "x")], 3600, 1800),
    ([obj("a", "x")], -7200, -3600),
    ([obj("a", "x")], -7200, 60),
    ([obj("a", "x")], 600, 3600),
]


async def test_silence_validation_agrees_with_alertmanager(tmp_path: Path) -> None:
    config = "route:\n  receiver: d\nreceivers:\n  - name: d\n"
    outcomes = []
    async with alertmanager(tmp_path, config) as url, aiohttp.ClientSession() as session:
        for matchers, start, end in SILENCE_ORACLE:
            now = time.time()
            # Whole seconds, a minute clear of `now`, so neither side sees a different "now" on a boundary.
            starts_at, ends_at = float(int(now) + start + 60), float(int(now) + end + 60)
            body = {"matchers": matchers, "startsAt": am_time(starts_at), "endsAt": am_time(ends_at),
                    "createdBy": "test", "comment": "oracle"}
            async with session.post(f"{url}/api/v2/silences", json=body) as resp:
                theirs = resp.status == 200
                text = await resp.text()
            try:
                silence_from_request({"matchers": matchers, "starts_at": am_time(starts_at),
                                      "ends_at": am_time(ends_at), "created_by": "test", "comment": "oracle"}, now)
                ours, why = True, ""
            except ValueError as err:
                ours, why = False, str(err)
            assert ours == theirs, (matchers, start, end, text, why)
            outcomes.append(theirs)
    assert outcomes.count(True) >= 8 and outcomes.count(False) >= 8
