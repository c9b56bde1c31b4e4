"""Alert label and annotation templates (agent.alerting.template) behave as Prometheus 2.42's.

The expected texts are Go's: the ported cases of Prometheus's template/template_test.go, and tables of
templates whose expansions (and error messages) were taken from Debian's promtool 2.42 expanding the
same templates for an alert with labels {__name__="m", instance="host:9100", job="node"} and value 0.5.
test_tables_match_promtool re-derives those tables from the installed promtool.
"""

from __future__ import annotations

import math
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from agent.alerting import template as T
from agent.alerting.rules import TemplateData
from agent.promql.values import Sample as PromQLSample
from tests.conftest import require_binary

EXT_URL = "http://testhost:9090/path/prefix"
LABELS = {"__name__": "m", "instance": "host:9100", "job": "node"}
VALUE = 0.5


def prometheus_expand(text: str, data: object = None, query_result: list[T.Sample] | None = None) -> str:
    """Prometheus's Expander.Expand as its template_test.go runs it: template "test", no alert header."""
    try:
        template = T.compile(text, "test", alert=False)
    except T.TemplateError as exc:
        return f"error parsing template test: {exc}"
    query = (lambda q: query_result) if query_result is not None else None
    try:
        return template.execute(data, external_url=EXT_URL, query=query)
    except T.TemplateError as exc:
        return f"error executing template test: {exc}"


def alert_query(expr: str) -> list[T.Sample]:
    """What promtool's query function answered in the tables: series m, nothing else."""
    return [T.Sample(dict(LABELS), VALUE)] if expr == "m" else []


def alert_expand(text: str) -> str:
    out, _ = T.expand(text, T.AlertData(dict(LABELS), VALUE), "__alert_T", alert_query)
    return out


# --- Prometheus's template_test.go (TestTemplateExpansion), the text-mode cases ---

M = "metric"
SAMPLE_A = T.Sample({"__name__": M, "instance": "a"}, 11)
SAMPLE_B = T.Sample({"__name__": M, "instance": "b"}, 21)
MAX_INT64 = 2**63 - 1
MAX_UINT64 = 2**64 - 1

PROMETHEUS_CASES = [
    ("plain text", None, None, "plain text"),
    ("{{ 1 }}", None, None, "1"),
    ("{{\u00a0}}", None, None,
     "error parsing template test: template: test:1: unrecognized character in action: U+00A0"),
    ('{{ "<b>" }}', None, None, "<b>"),
    ('{{define "x"}}{{.arg0}} {{.arg1}}{{end}}{{template "x" (args 1 "2")}}', None, None, "1 2"),
    ('{{ query "1.5" | first | value }}', None, [T.Sample({}, 1.5)], "1.5"),
    ("{{ query \"metric{instance='a'}\" | first | value }}", None, [SAMPLE_A], "11"),
    ("{{ query \"metric{instance='a'}\" | first | label \"instance\" }}", None, [SAMPLE_A], "a"),
    ("{{ query \"metric{__value__='a'}\" | first | strvalue }}", None, [T.Sample({"__value__": "a"}, 11)], "a"),
    ("{{ query \"metric{instance='a'}\" | first | label \"foo\" }}", None, [SAMPLE_A], ""),
    ('{{ $x := query "metric" | first }}{{ $x.Labels.foo }}', None, [SAMPLE_A], ""),
    ('{{ range query "metric" | sortByLabel "instance" }}{{.Labels.instance}}:{{.Value}}: {{end}}', None,
     [SAMPLE_B, SAMPLE_A], "a:11: b:21: "),
    ('{{ "foo.example.com" | stripPort }}', None, None, "foo.example.com"),
    ('{{ "foo.example.com:12345" | stripPort }}', None, None, "foo.example.com"),
    ('{{ "192.0.2.1" | stripPort }}', None, None, "192.0.2.1"),
    ('{{ "192.0.2.1:12345" | stripPort }}', None, None, "192.0.2.1"),
    ('{{ "2001:0DB8::1" | stripPort }}', None, None, "2001:0DB8::1"),
    ('{{ "[2001:0DB8::1]:12345" | stripPort }}', None, None, "2001:0DB8::1"),
    ('{{ "[2001:0DB8::1]::12345" | stripPort }}', None, None, "[2001:0DB8::1]::12345"),
    ("{{ .Foo }}", None, None, "<no value>"),
    ("{{", None, None, "error parsing template test: template: test:1: unclosed action"),
    ('{{ query "missing" | first }}', None, [],
     'error executing template test: template: test:1:21: executing "test" at <first>: error calling first: '
     "first() called on vector with no elements"),
    ('{{ (query "missing").banana }}', None, [],
     'error executing template test: template: test:1:10: executing "test" at <"missing">: '
     "can't evaluate field banana in type template.queryResult"),
    ('{{ reReplaceAll "(a)b" "x$1" "ab" }}', None, None, "xa"),
    ("{{ range . }}{{ humanize . }}:{{ end }}", [0.0, 1.0, 1234567.0, 0.12], None, "0:1:1.235M:120m:"),
    ("{{ range . }}{{ humanize . }}:{{ end }}", ["0.0", "1.0", "1234567.0", ".12"], None, "0:1:1.235M:120m:"),
    ('{{ humanize "one" }}', None, None,
     'error executing template test: template: test:1:3: executing "test" at <humanize "one">: '
     'error calling humanize: strconv.ParseFloat: parsing "one": invalid syntax'),
    ("{{ range . }}{{ humanize . }}:{{ end }}", [0, -1, 1, 1234567, MAX_INT64], None, "0:-1:1:1.235M:9.223E:"),
    ("{{ range . }}{{ humanize . }}:{{ end }}", [0, 1, 1234567, MAX_UINT64], None, "0:1:1.235M:18.45E:"),
    ("{{ range . }}{{ humanize1024 . }}:{{ end }}", [0.0, 1.0, 1048576.0, 0.12], None, "0:1:1Mi:0.12:"),
    ("{{ range . }}{{ humanize1024 . }}:{{ end }}", ["0.0", "1.0", "1048576.0", ".12"], None, "0:1:1Mi:0.12:"),
    ('{{ humanize1024 "one" }}', None, None,
     'error executing template test: template: test:1:3: executing "test" at <humanize1024 "one">: '
     'error calling humanize1024: strconv.ParseFloat: parsing "one": invalid syntax'),
    ("{{ range . }}{{ humanize1024 . }}:{{ end }}", [0, -1, 1, 1234567, MAX_INT64], None, "0:-1:1:1.177Mi:8Ei:"),
    ("{{ range . }}{{ humanize1024 . }}:{{ end }}", [0, 1, 1234567, MAX_UINT64], None, "0:1:1.177Mi:16Ei:"),
    ("{{ range . }}{{ humanizeDuration . }}:{{ end }}",
     [0, 1, 60, 3600, 86400, 86400 + 3600, -(86400 * 2 + 3600 * 3 + 60 * 4 + 5), 899.99], None,
     "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:1d 1h 0m 0s:-2d 3h 4m 5s:14m 59s:"),
    ("{{ range . }}{{ humanizeDuration . }}:{{ end }}", ["0", "1", "60", "3600", "86400"], None,
     "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:"),
    ("{{ range . }}{{ humanizeDuration . }}:{{ end }}", [0.1, 0.0001, 0.12345, 60.1, 60.5, 1.2345, 12.345], None,
     "100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s:"),
    ("{{ range . }}{{ humanizeDuration . }}:{{ end }}", [".1", ".0001", ".12345", "60.1", "60.5", "1.2345", "12.345"],
     None, "100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s:"),
    ('{{ humanizeDuration "one" }}', None, None,
     'error executing template test: template: test:1:3: executing "test" at <humanizeDuration "one">: '
     'error calling humanizeDuration: strconv.ParseFloat: parsing "one": invalid syntax'),
    ("{{ range . }}{{ humanizeDuration . }}:{{ end }}", [0, -1, 1, 1234567], None, "0s:-1s:1s:14d 6h 56m 7s:"),
    ("{{ range . }}{{ humanize . }}:{{ humanize1024 . }}:{{ humanizeDuration . }}:{{humanizeTimestamp .}}:{{ end }}",
     [math.inf, -math.inf, math.nan], None, "+Inf:+Inf:+Inf:+Inf:-Inf:-Inf:-Inf:-Inf:NaN:NaN:NaN:NaN:"),
    ("{{ range . }}{{ humanize . }}:{{ humanize1024 . }}:{{ humanizeDuration . }}:{{humanizeTimestamp .}}:{{ end }}",
     ["+Inf", "-Inf", "NaN"], None, "+Inf:+Inf:+Inf:+Inf:-Inf:-Inf:-Inf:-Inf:NaN:NaN:NaN:NaN:"),
    ("{{ -0.22222 | humanizePercentage }}:{{ 0.0 | humanizePercentage }}:{{ 0.1234567 | humanizePercentage }}:"
     "{{ 1.23456 | humanizePercentage }}", None, None, "-22.22%:0%:12.35%:123.5%"),
    ("{{ range . }}{{ humanizePercentage . }}:{{ end }}", [0, -1, 1, 1234567, MAX_INT64], None,
     "0%:-100%:100%:1.235e+08%:9.223e+20%:"),
    ("{{ range . }}{{ humanizePercentage . }}:{{ end }}", [0, 1, 1234567, MAX_UINT64], None,
     "0%:100%:1.235e+08%:1.845e+21%:"),
    ('{{ "-0.22222" | humanizePercentage }}:{{ "0.0" | humanizePercentage }}:{{ "0.1234567" | humanizePercentage }}:'
     '{{ "1.23456" | humanizePercentage }}', None, None, "-22.22%:0%:12.35%:123.5%"),
    ('{{ "one" | humanizePercentage }}', None, None,
     'error executing template test: template: test:1:11: executing "test" at <humanizePercentage>: '
     'error calling humanizePercentage: strconv.ParseFloat: parsing "one": invalid syntax'),
    ("{{ range . }}{{ humanizeTimestamp . }}:{{ end }}", [0, -1, 1, 1234567, 9223372036], None,
     "1970-01-01 00:00:00 +0000 UTC:1969-12-31 23:59:59 +0000 UTC:1970-01-01 00:00:01 +0000 UTC:"
     "1970-01-15 06:56:07 +0000 UTC:2262-04-11 23:47:16 +0000 UTC:"),
    ("{{ range . }}{{ humanizeTimestamp . }}:{{ end }}", [-MAX_INT64 - 1, MAX_INT64], None,
     'error executing template test: template: test:1:16: executing "test" at <humanizeTimestamp .>: '
     "error calling humanizeTimestamp: -9.223372036854776e+18 cannot be represented as a nanoseconds timestamp "
     "since it overflows int64"),
    ("{{ range . }}{{ humanizeTimestamp . }}:{{ end }}", [MAX_UINT64], None,
     'error executing template test: template: test:1:16: executing "test" at <humanizeTimestamp .>: '
     "error calling humanizeTimestamp: 1.8446744073709552e+19 cannot be represented as a nanoseconds timestamp "
     "since it overflows int64"),
    ("{{ 1435065584.128 | humanizeTimestamp }}", None, None, "2015-06-23 13:19:44.128 +0000 UTC"),
    ('{{ "1435065584.128" | humanizeTimestamp }}', None, None, "2015-06-23 13:19:44.128 +0000 UTC"),
    ('{{ (1435065584.128 | toTime).Format "2006" }}', None, None, "2015"),
    ('{{ ("1435065584.128" | toTime).Format "2006" }}', None, None, "2015"),
    ('{{ "aa bb CC" | title }}', None, None, "Aa Bb CC"),
    ('{{ "aa bb CC" | toUpper }}', None, None, "AA BB CC"),
    ('{{ "aA bB CC" | toLower }}', None, None, "aa bb cc"),
    ('{{ match "a+" "aa" }} {{ match "a+" "b" }}', None, None, "true false"),
    ('{{ graphLink "up" }}', None, None, "/graph?g0.expr=up&g0.tab=0"),
    ('{{ tableLink "up" }}', None, None, "/graph?g0.expr=up&g0.tab=1"),
    ("{{ pathPrefix }}", None, None, "/path/prefix"),
    ("{{ externalURL }}", None, None, "http://testhost:9090/path/prefix"),
    ('{{ printf "%0.2f" (parseDuration "1h2m10ms") }}', None, None, "3720.01"),
    ('{{ "foo.example.com" | stripDomain }}', None, None, "foo"),
    ('{{ "foo.example.com:12345" | stripDomain }}', None, None, "foo:12345"),
    ('{{ "192.0.2.1" | stripDomain }}', None, None, "192.0.2.1"),
    ('{{ "192.0.2.1:12345" | stripDomain }}', None, None, "192.0.2.1:12345"),
    ('{{ "2001:0DB8::1" | stripDomain }}', None, None, "2001:0DB8::1"),
    ('{{ "[2001:0DB8::1]:12345" | stripDomain }}', None, None, "[2001:0DB8::1]:12345"),
    ('{{ "[2001:0DB8::1]::12345" | stripDomain }}', None, None, "[2001:0DB8::1]::12345"),
]


@pytest.mark.parametrize(("text", "data", "query_result", "want"), PROMETHEUS_CASES)
def test_prometheus_template_test_cases(text: str, data: object, query_result: list[T.Sample] | None,
                                        want: str) -> None:
    assert prometheus_expand(text, data, query_result) == want


# --- tables from promtool 2.42 (alert templates: Prometheus's header is in front of each) ---

def exec_error(col: int, at: str, message: str, line: int = 1, name: str = "__alert_T") -> str:
    """What Prometheus puts in an annotation whose template fails: Go's error, at line:column (in bytes)."""
    return (f"<error expanding template: error executing template __alert_T: template: __alert_T:{line}:{col}: "
            f'executing "{name}" at <{at}>: {message}>')


SYNTAX = [
    ('plain text',
     'plain text'),
    ('a  {{- 1 -}}  b',
     'a1b'),
    ('a {{- /* c */ -}} b',
     'ab'),
    ('x\n  {{- if true }}\n  y\n  {{- end }}\nz',
     'x\n  y\nz'),
    ('{{ 1 -}}\n\n{{- 2 }}',
     '12'),
    ('{{1}} {{-2}}',
     '1 -2'),
    ('{{/* comment */}}ok',
     'ok'),
    ('{{- /* c */}} ok',
     ' ok'),
    ('{{ "a" }}{{/*\nmultiline\n*/}}b',
     'ab'),
    ('{{\nprintf\n"%d"\n1\n}}',
     '1'),
    ('{{ $x := 3 }}{{ $x }}',
     '3'),
    ('{{ $x := 1 }}{{ $x = 2 }}{{ $x }}{{ if true }}{{ $x = 3 }}{{ $y := 4 }}{{ end }}{{ $x }}',
     '23'),
    ('{{ if gt $value 1.0 }}big{{ else if gt $value 0.25 }}medium{{ else }}small{{ end }}',
     'medium'),
    ('{{ if eq $labels.job "node" }}{{ if lt $value 1.0 }}node-low{{ else }}node-high{{ end }}{{ end }}',
     'node-low'),
    ('{{ if and (eq $labels.job "node") (gt $value 0.1) }}hi{{ else if true }}no{{ end }}',
     'hi'),
    ('{{ with $labels.job }}{{ . | toUpper }}{{ end }}',
     'NODE'),
    ('{{ with $labels.nope }}y{{ else }}n{{ end }}',
     'n'),
    ('{{ with $x := $labels.job }}{{ $x }}{{ . }}{{ end }}',
     'nodenode'),
    ('{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}',
     '__name__=m;instance=host:9100;job=node;'),
    ('{{ range $labels }}{{ . }},{{ end }}',
     'm,host:9100,node,'),
    ('{{ range $i, $e := $labels }}{{ $i }}{{ else }}none{{ end }}',
     '__name__instancejob'),
    ('{{ range $labels.missing }}x{{ else }}e{{ end }}',
     exec_error(128, '$labels.missing', "range can't iterate over ")),
    ('{{ range (args) }}x{{ else }}empty{{ end }}',
     'empty'),
    ('{{ range $k, $v := (args "a" "b") }}{{ $k }}{{ $v }}{{ end }}',
     'arg0aarg1b'),
    ('{{ range $i, $v := $labels }}{{ if eq $i "job" }}{{ break }}{{ end }}{{ $v }},{{ end }}',
     'm,host:9100,'),
    ('{{ range $labels }}{{ continue }}x{{ end }}y',
     'y'),
    ('{{ $x := "a" }}{{ range $labels }}{{ $x = . }}{{ end }}{{ $x }}',
     'node'),
    ('{{ define "t" }}[{{ .job }}]{{ end }}{{ template "t" $labels }}{{ template "t" .Labels }}',
     '[node][node]'),
    ('{{ define "x" }}X{{ . }}{{ end }}{{ template "x" 5 }}|{{ block "b" 2 }}B{{.}}{{ end }}',
     'X5|B2'),
    ('{{ template "t" }}{{ define "t" }}late{{ end }}',
     'late'),
    ('{{ block "b" . }}{{ .Value }}{{ end }}',
     '0.5'),
    ('{{ $labels.job | printf "%s-%s" "a" }}',
     'a-node'),
    ('{{ "a" | printf "%s" | printf "%q" }}',
     '"a"'),
    ('{{ 1 | printf "%d %d" 2 }}',
     '2 1'),
    ('{{ "x" | eq "x" }}',
     'true'),
    ('{{ and 1 | not }}',
     'false'),
    ('{{ $labels.job | len | printf "%03d" }}',
     '004'),
    ('{{ (1) }}{{ ("a") }}',
     '1a'),
    ('{{ (printf "%d" 1 | len) }}',
     '1'),
    ('{{ $ }}',
     '{map[__name__:m instance:host:9100 job:node] map[]  0.5}'),
    ('{{ . }}',
     '{map[__name__:m instance:host:9100 job:node] map[]  0.5}'),
    ('{{ $.Labels.job }}',
     'node'),
    ('{{ .Labels.job }} {{ .Value }} {{ .ExternalURL }}x',
     'node 0.5 x'),
    ('{{ "\\u00e9\\x41\\101\\t" }}',
     'éAA\t'),
    ('{{ `raw\\n` }}',
     'raw\\n'),
    ("{{ 'a' }} {{ 0x10 }} {{ 010 }} {{ 1_000 }} {{ 0b101 }} {{ 0o17 }} {{ 1.5e3 }} {{ 0x1p4 }} {{ 1i }} {{ 1"
     '+2i }} {{ -0.0 }} {{ true }}',
     '97 16 8 1000 5 15 1500 16 (0+1i) (1+2i) -0 true'),
]

BUILTINS = [
    ('{{ eq "a" "b" "a" }}',
     'true'),
    ('{{ eq nil nil }}',
     'true'),
    ('{{ eq 1 1.0 }}',
     exec_error(115, 'eq 1 1.0', 'error calling eq: incompatible types for comparison')),
    ('{{ eq (safeHtml "a") "a" }}',
     'true'),
    ('{{ if ne $labels.job "x" }}ne{{ end }}',
     'ne'),
    ('{{ if lt $value 3.0 }}lt{{ end }}{{ if le $value 0.5 }}le{{ end }}{{ if ge $value 0.5 }}ge{{ end }}{{ i'
     'f gt $value 0.4 }}gt{{ end }}',
     'ltlegegt'),
    ('{{ lt "a" "b" }} {{ lt 1 2 }} {{ le 1 1 }} {{ ge "b" "a" }}',
     'true true true true'),
    ('{{ and 1 0 }}|{{ or 0 "" }}|{{ not 0 }}',
     '0||true'),
    ('{{ or "" $labels.job }}',
     'node'),
    ('{{ and $labels.job $labels.missing "x" }}',
     ''),
    ('{{ or (index $labels "nope") "default" }}',
     'default'),
    ('{{ and 0 (index nil 1) }}',
     '0'),
    ('{{ or 1 (index nil 1) }}',
     '1'),
    ('{{ len $labels }} {{ len "héllo" }} {{ len (args 1 2) }}',
     '3 6 2'),
    ('{{ index "abc" 1 }} {{ index $labels "job" }} {{ index $labels }} {{ index $labels "nope" }}|',
     '98 node map[__name__:m instance:host:9100 job:node] |'),
    ('{{ index (args 1) "arg5" }}|{{ (args 1).arg5 }}|{{ (args 1).arg0 }}',
     '<no value>|<no value>|1'),
    ('{{ slice "abcdef" 1 3 }} {{ slice "héllo" 1 3 }} {{ "abc" | slice }}',
     'bc é abc'),
    ('{{ print 1 2 "a" "b" 3 nil 1.5 }}',
     '1 2ab3 <nil> 1.5'),
    ('{{ println 1 "a" }}',
     '1 a\n'),
    ('{{ print }}',
     ''),
    ('{{ html "<a href=\'x\'>&\\"" }}',
     '&lt;a href=&#39;x&#39;&gt;&amp;&#34;'),
    ('{{ html nil }}',
     '&lt;no value&gt;'),
    ('{{ js "a=b<\'\\"\\\\ é\\u2028" }}',
     'a\\u003Db\\u003C\\\'\\"\\\\ é\\u2028'),
    ('{{ urlquery "a b/c?d=e&f~g_h.i-j é" }}',
     'a+b%2Fc%3Fd%3De%26f~g_h.i-j+%C3%A9'),
    ('{{ if not (index $labels "missing") }}absent{{ end }}',
     'absent'),
    ('{{ if $labels.missing }}y{{ else }}n{{ end }}',
     'n'),
    ('{{ $labels.missing }}|{{ .Labels.missing }}|{{ index $labels "missing" }}|',
     '|||'),
]

PRINTF = [
    ('{{ printf "%5.1f|%-6s|%06d|%+d|%x|%X|%o|%b|%c|%q|%U|%e|%E|%g|%G|%t|%%|%v" 3.14159 "ab" 42 5 255 255 8 5'
     ' 65 66 67 1234.5678 0.000012 1e7 1e-7 true nil }}',
     "  3.1|ab    |000042|+5|ff|FF|10|101|A|'B'|U+0043|1.234568e+03|1.200000E-05|1e+07|1E-07|true|%|<nil>"),
    ('{{ printf "%d %d" 1 }}',
     '1 %!d(MISSING)'),
    ('{{ printf "%d" 1 2 }}',
     '1%!(EXTRA int=2)'),
    ('{{ printf "%" }}',
     '%!(NOVERB)'),
    ('{{ printf "%z" 1 }}',
     '%!z(int=1)'),
    ('{{ printf "%s" nil }}',
     '%!s(<nil>)'),
    ('{{ printf "%d" "x" }}',
     '%!d(string=x)'),
    ('{{ printf "%s" 1 }}',
     '%!s(int=1)'),
    ('{{ printf "%t" 1 }}',
     '%!t(int=1)'),
    ('{{ printf "%v %s %d" $labels $labels $labels }}',
     'map[__name__:m instance:host:9100 job:node] map[__name__:m instance:host:9100 job:node] map[%!d(string='
     '__name__):%!d(string=m) %!d(string=instance):%!d(string=host:9100) %!d(string=job):%!d(string=node)]'),
    ('{{ printf "%v" (args 1 "a") }}',
     'map[arg0:1 arg1:a]'),
    ('{{ printf "%+v" . }}',
     '{Labels:map[__name__:m instance:host:9100 job:node] ExternalLabels:map[] ExternalURL: Value:0.5}'),
    ('{{ printf "%v" . }}',
     '{map[__name__:m instance:host:9100 job:node] map[]  0.5}'),
    ('{{ printf "%q" "héllo\\n\\x00\\u00a0" }}',
     '"héllo\\n\\x00\\u00a0"'),
    ('{{ printf "%+q" "héllo" }}',
     '"h\\u00e9llo"'),
    ('{{ printf "%#q" "hello" }}',
     '`hello`'),
    ('{{ printf "%x" "hi" }}',
     '6869'),
    ('{{ printf "% x" "hi" }}',
     '68 69'),
    ('{{ printf "%.2s" "héllo" }}',
     'hé'),
    ('{{ printf "%10.3v|" "abcdef" }}',
     '       abc|'),
    ('{{ printf "%T %T %T %T %T" 1 1.5 "a" $labels nil }}',
     'int float64 string map[string]string <nil>'),
    ('{{ . | printf "%T" }}',
     'struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value float64 }'),
    ('{{ safeHtml "<b>" | printf "%T %s" }}',
     'template.HTML %!s(MISSING)'),
    ('{{ printf "%05s|%-05d|%08.3f|%+.2e|% d|%#x|%#o|%x|%.3d|%8.3d|%-8q|%5t|%05.1f|%05v" "ab" 3 -3.14159 1234'
     '5.678 5 255 8 -255 7 -7 "a" true -1.0 "x" }}',
     '000ab|3    |-003.142|+1.23e+04| 5|0xff|010|-ff|007|    -007|"a"     | true|-01.0|0000x'),
    ('{{ printf "%v|%.3v|%g|%.3g|%e|%.0f|%f|%x|%b" 1e21 3.14159 100000.0 1234567.0 0.0 2.5 1e-7 1.0 1.0 }}',
     '1e+21|3.14|100000|1.23e+06|0.000000e+00|2|0.000000|0x1p+00|4503599627370496p-52'),
    ('{{ printf "%[2]d %[1]d %d" 1 2 }}',
     '2 1 2'),
    ('{{ printf "%*d|%-*d|%.*f" 5 1 4 2 2 3.14159 }}',
     '    1|2   |3.14'),
    ('{{ printf "%[3]d %d %[1]d %d" 1 2 3 }}',
     '3 %!d(MISSING) 1 2'),
    ('{{ printf "%[5]d" 1 }}',
     '%!d(BADINDEX)'),
    ('{{ printf "%*s" "a" "b" }}',
     '%!(BADWIDTH)b'),
    ('{{ printf "%08.3e|%-10.2g|%+.1f|% .1f" 1234.5 0.000123 -2.0 3.0 }}',
     '1.234e+03|0.00012   |-2.0| 3.0'),
    ('{{ printf "%x|%X" 3.5 -3.5 }}',
     '0x1.cp+01|-0X1.CP+01'),
    ('{{ printf "%5s|%-5s|%.1s|%5.1q" "ab" "ab" "ab" "ab" }}',
     '   ab|ab   |a|  "a"'),
    ('{{ printf "%3c|%-4q|%#x|%#o|%#b|%O" 65 66 10 10 5 8 }}',
     "  A|'B' |0xa|012|0b101|0o10"),
    ('{{ printf "%.3d|%+.3d|%05d|%-05d|% 05d" 5 5 -5 -5 5 }}',
     '005|+005|-0005|-5   | 0005'),
    ('{{ printf "%x %X %o %b %c %U %#U %q" -255 3054 -8 -5 233 233 233 233 }}',
     "-ff BEE -10 -101 é U+00E9 U+00E9 'é' 'é'"),
    ('{{ printf "%v %v %v %v %v %v" 100000.0 1000000.0 0.0001 0.00001 1e20 1e21 }}',
     '100000 1e+06 0.0001 1e-05 1e+20 1e+21'),
    ('{{ printf "%g %g %e %f" 123456789.0 1e-7 123456789.0 1e21 }}',
     '1.23456789e+08 1e-07 1.234568e+08 1000000000000000000000.000000'),
    ('{{ printf "%6.2f%%" 12.3456 }}',
     ' 12.35%'),
    ('{{ 1e6 }} {{ 123456.0 }} {{ 1234567.5 }} {{ 0.1 }} {{ 1e100 }} {{ 0.0001 }} {{ 0.00001 }} {{ 3.0 }} {{ 1e21 }}',
     '1e+06 123456 1.2345675e+06 0.1 1e+100 0.0001 1e-05 3 1e+21'),
]

PROMETHEUS_FUNCS = [
    ('{{ title "hello wORLD foo-bar o\'neil" }}',
     "Hello WORLD Foo-Bar O'Neil"),
    ('{{ title "ǆungla ßx élan 3rd a_b" }} {{ toUpper "ßtraße" }} {{ toLower "İSTANBUL" }}',
     'ǅungla ßx Élan 3rd A_b ßTRAßE istanbul'),
    ('{{ reReplaceAll "x*" "-" "abxd" }}',
     '-a-b-d-'),
    ('{{ reReplaceAll "a|" "-" "baaac" }}',
     '-b---c-'),
    ('{{ reReplaceAll "^" "X" "ab" }}{{ reReplaceAll "$" "X" "ab" }}{{ reReplaceAll "\\\\b" "|" "ab cd" }}',
     'XababX|ab| |cd|'),
    ('{{ reReplaceAll "" "-" "abé" }}',
     '-a-b-é-'),
    ('{{ reReplaceAll "(?P<h>[^.:]+)[.:].*" "${h}" $labels.instance }}',
     'host'),
    ('{{ reReplaceAll "(\\\\w+):(\\\\d+)" "$2/$1/$$" $labels.instance }}',
     '9100/host/$'),
    ('{{ match "^a+$" "aaa" }} {{ match "a+" "b" }}',
     'true false'),
    ('{{ match "^host:\\\\d+$" .Labels.instance }}',
     'true'),
    ('{{ stripPort "[::1]:80" }} {{ stripPort "a:b:c" }} {{ stripDomain "fe80::1%eth0" }} {{ stripDomain "[::'
     '1]:9" }} {{ stripDomain "a.b.c:99" }} {{ stripDomain "01.02.03.04" }}',
     '::1 a:b:c fe80::1%eth0 [::1]:9 a:99 01'),
    ('{{ graphLink "rate(x[5m]) > 1" }} {{ tableLink "up" }}',
     '/graph?g0.expr=rate%28x%5B5m%5D%29+%3E+1&g0.tab=0 /graph?g0.expr=up&g0.tab=1'),
    ('{{ parseDuration "1h30m" }} {{ parseDuration "1y" }} {{ parseDuration "0" }} {{ parseDuration "90s" | h'
     'umanizeDuration }}',
     '5400 3.1536e+07 0 1m 30s'),
    ('{{ humanize "1_000" }} {{ humanize "0x1p4" }} {{ humanize "inf" }} {{ humanize "+Infinity" }}',
     '1k 16 +Inf +Inf'),
    ('{{ humanizeDuration -0.5 }} {{ humanizeDuration 0.000001234 }} {{ humanizeDuration 1e-30 }} {{ humanize'
     ' -1234 }} {{ humanize 1e30 }} {{ humanize 1e-30 }} {{ humanize1024 -2048 }} {{ humanize1024 1e30 }}',
     '-500ms 1.234us 1e-06ys -1.234k 1e+06Y 1e-06y -2ki 8.272e+05Yi'),
    ('{{ humanizeDuration 1e19 }} {{ humanizeDuration 86400.5 }} {{ humanizeDuration 59.99999 }} {{ humanizeD'
     'uration 1e-3 }}',
     '-106751991167300d -15h -30m -8s 1d 0h 0m 0s 60s 1ms'),
    ('{{ humanizeTimestamp -1.5 }}|{{ humanizeTimestamp 0.0001 }}|{{ humanizeTimestamp 1.123456789 }}|{{ huma'
     'nizeTimestamp 1e9 }}|{{ humanizeTimestamp -1e9 }}',
     '1969-12-31 23:59:58.5 +0000 UTC|1970-01-01 00:00:00 +0000 UTC|1970-01-01 00:00:01.123 +0000 UTC|2001-09'
     '-09 01:46:40 +0000 UTC|1938-04-24 22:13:20 +0000 UTC'),
    ('{{ toTime 1435065584.128 }}',
     '2015-06-23 13:19:44.128 +0000 UTC'),
    ('{{ (toTime 1435065584.128).Format "2006-01-02T15:04:05.000Z07:00 Mon Jan _2 3PM .999" }} {{ (toTime 1).Unix }}',
     '2015-06-23T13:19:44.128Z Tue Jun 23 1PM .128 1'),
    ('{{ safeHtml "<b>" }}',
     '<b>'),
    ('{{ args 1 "a" }}',
     'map[arg0:1 arg1:a]'),
]

EXEC_ERRORS = [
    ('{{ .Foo }}',
     exec_error(115, '.Foo',
                "can't evaluate field Foo in type struct { Labels map[string]string; ExternalLabels map[strin"
                'g]string; ExternalURL string; Value float64 }')),
    ('{{ $labels.instance.x }}',
     exec_error(122, '$labels.instance.x', "can't evaluate field x in type string")),
    ('{{ index $labels 1 }}',
     exec_error(115, 'index $labels 1', 'error calling index: value has type int; should be string')),
    ('{{ eq $value 1 }}',
     exec_error(115, 'eq $value 1', 'error calling eq: incompatible types for comparison')),
    ('{{ humanize "one" }}',
     exec_error(115, 'humanize "one"', 'error calling humanize: strconv.ParseFloat: parsing "one": invalid syntax')),
    ('{{ (1).x }}',
     exec_error(116, '1', "can't evaluate field x in type int")),
    ('{{ nil }}',
     exec_error(115, 'nil', 'nil is not a command')),
    ('{{ .Value.X }}',
     exec_error(121, '.Value.X', "can't evaluate field X in type float64")),
    ('{{ eq $labels $labels }}',
     exec_error(115, 'eq $labels $labels',
                'error calling eq: non-comparable type map[__name__:m instance:host:9100 job:node]: map[strin'
                'g]string')),
    ('{{ ne 1 2 3 }}',
     exec_error(115, 'ne', 'wrong number of args for ne: want 2 got 3')),
    ('{{ lt "a" 1 }}',
     exec_error(115, 'lt "a" 1', 'error calling lt: incompatible types for comparison')),
    ('{{ lt true false }}',
     exec_error(115, 'lt true false', 'error calling lt: invalid type for comparison')),
    ('{{ reReplaceAll "a" "b" }}',
     exec_error(115, 'reReplaceAll', 'wrong number of args for reReplaceAll: want 3 got 2')),
    ('{{ range 5 }}x{{ end }}',
     exec_error(121, '5', "range can't iterate over 5")),
    ('{{ range $labels.instance }}x{{ end }}',
     exec_error(128, '$labels.instance', "range can't iterate over host:9100")),
    ('{{ index "abc" 5 }}',
     exec_error(115, 'index "abc" 5', 'error calling index: index out of range: 5')),
    ('{{ index "abc" 3 }}',
     exec_error(115, 'index "abc" 3', 'error calling index: reflect: string index out of range')),
    ('{{ len 3 }}',
     exec_error(115, 'len 3', 'error calling len: len of type int')),
    ('{{ len nil }}',
     exec_error(115, 'len nil', 'error calling len: reflect: call of reflect.Value.Type on zero Value')),
    ('{{ not nil }} {{ and }}',
     exec_error(129, 'and', 'wrong number of args for and: want at least 1 got 0')),
    ('{{ call nil }}',
     exec_error(115, 'call nil', 'error calling call: call of nil')),
    ('{{ $y = 1 }}',
     exec_error(120, '1', 'undefined variable: $y')),
    ('{{ range $i, $c := "x" }}{{ end }}',
     exec_error(131, '"x"', "range can't iterate over x")),
    ('{{ template "x" }}',
     exec_error(124, '{{template "x"}}', 'template "x" not defined')),
    ('{{ humanize true }}',
     exec_error(115, 'humanize true', "error calling humanize: can't convert bool to float")),
    ('{{ humanize nil }}',
     exec_error(115, 'humanize nil', "error calling humanize: can't convert <nil> to float")),
    ('{{ humanize $labels }}',
     exec_error(115, 'humanize $labels', "error calling humanize: can't convert map[string]string to float")),
    ('{{ humanize "1e400" }}',
     exec_error(115, 'humanize "1e400"',
                'error calling humanize: strconv.ParseFloat: parsing "1e400": value out of range')),
    ('{{ humanize "0x10" }}',
     exec_error(115, 'humanize "0x10"', 'error calling humanize: strconv.ParseFloat: parsing "0x10": invalid syntax')),
    ('{{ humanize " 1" }}',
     exec_error(115, 'humanize " 1"', 'error calling humanize: strconv.ParseFloat: parsing " 1": invalid syntax')),
    ('{{ humanizeTimestamp 1e10 }}',
     exec_error(115, 'humanizeTimestamp 1e10',
                'error calling humanizeTimestamp: 1e+10 cannot be represented as a nanoseconds timestamp sinc'
                'e it overflows int64')),
    ('{{ parseDuration "1.5h" }}',
     exec_error(115, 'parseDuration "1.5h"', 'error calling parseDuration: not a valid duration string: "1.5h"')),
    ('{{ toTime "x" }}',
     exec_error(115, 'toTime "x"', 'error calling toTime: strconv.ParseFloat: parsing "x": invalid syntax')),
    ('{{ toTime 1e20 }}',
     exec_error(115, 'toTime 1e20',
                'error calling toTime: 1e+20 cannot be represented as a nanoseconds timestamp since it overfl'
                'ows int64')),
    ('{{ (args 1).arg5.foo }}',
     exec_error(121, '1', 'nil pointer evaluating interface {}.foo')),
    ('{{ toUpper (safeHtml "a") }}',
     exec_error(133, '"a"', 'wrong type for value; expected string; got template.HTML')),
    ('{{ toUpper 1 }}',
     exec_error(123, '1', 'expected string; found 1')),
    ('{{ toUpper $value }}',
     exec_error(123, '$value', 'wrong type for value; expected string; got float64')),
    ('{{ toUpper nil }}',
     exec_error(123, 'nil', 'cannot assign nil to string')),
    ('{{ $labels.job 1 }}',
     exec_error(122, '$labels.job', 'job is not a method but has arguments')),
    ('{{ .Labels 1 }}',
     exec_error(115, '.Labels', 'Labels has arguments but cannot be invoked as function')),
    ('{{ printf }}',
     exec_error(115, 'printf', 'wrong number of args for printf: want at least 1 got 0')),
    ('{{ humanize 1 2 }}',
     exec_error(115, 'humanize', 'wrong number of args for humanize: want 1 got 2')),
    ('{{ 1 | humanize 2 }}',
     exec_error(119, 'humanize', 'wrong number of args for humanize: want 1 got 2')),
    ('{{ gt nil 1 }}',
     exec_error(115, 'gt nil 1', 'error calling gt: invalid type for comparison')),
    ('{{ query "none" | first }}',
     exec_error(130, 'first', 'error calling first: first() called on vector with no elements')),
    ('{{ (query "none").banana }}',
     exec_error(122, '"none"', "can't evaluate field banana in type template.queryResult")),
    ('{{ define "e" }}{{ .Nope }}{{ end }}{{ template "e" . }}',
     exec_error(131, '.Nope',
                "can't evaluate field Nope in type struct { Labels map[string]string; ExternalLabels map[stri"
                'ng]string; ExternalURL string; Value float64 }', line=1, name='e')),
    ('{{ label "a" nil }}',
     exec_error(115, 'label "a" nil',
                'error calling label: runtime error: invalid memory address or nil pointer dereference')),
    ('{{ first . }}',
     exec_error(121, '.',
                'wrong type for value; expected template.queryResult; got struct { Labels map[string]string; '
                'ExternalLabels map[string]string; ExternalURL string; Value float64 }')),
    ('{{ range $i, $e := (query "m" | first) }}{{ end }}',
     exec_error(144, 'first', "range can't iterate over {map[__name__:m instance:host:9100 job:node] 0.5}")),
    ('line one\nline {{ $labels.job }} two\n  {{ humanize "é" }}',
     exec_error(5, 'humanize "é"',
                'error calling humanize: strconv.ParseFloat: parsing "é": invalid syntax', line=3, name='__alert_T')),
]

PARSE_ERRORS = [
    ('{{',
     'template: __alert_T:1: unclosed action'),
    ('{{ foo }}',
     'template: __alert_T:1: function "foo" not defined'),
    ('{{ $x }}',
     'template: __alert_T:1: undefined variable "$x"'),
    ('{{ if 1 }}',
     'template: __alert_T:1: unexpected EOF'),
    ('{{ end }}',
     'template: __alert_T:1: unexpected {{end}}'),
    ('{{ else }}',
     'template: __alert_T:1: unexpected {{else}}'),
    ('{{ .a | 1 }}',
     'template: __alert_T:1: non executable command in pipeline stage 2'),
    ('{{ "abc }}',
     'template: __alert_T:1: unterminated quoted string'),
    ('{{ ) }}',
     'template: __alert_T:1: unexpected ")" in command'),
    ('{{ ( }}',
     'template: __alert_T:1: unclosed left paren'),
    ('{{ 3x }}',
     'template: __alert_T:1: bad number syntax: "3x"'),
    ('{{ .a. }}',
     'template: __alert_T:1: unexpected <.> in operand'),
    ('{{ range $i, $v, $w := . }}{{end}}',
     'template: __alert_T:1: too many declarations in range'),
    ('{{/* x }}',
     'template: __alert_T:1: unclosed comment'),
    ('{{/* x */ }}',
     'template: __alert_T:1: comment ends before closing delimiter'),
    ('{{ if 1 }}{{ else }}{{ else }}{{ end }}',
     'template: __alert_T:1: expected end; found {{else}}'),
    ('{{ break }}',
     'template: __alert_T:1: {{break}} outside {{range}}'),
    ('line1\n{{ foo }}',
     'template: __alert_T:2: function "foo" not defined'),
    ('{{ if 1 }}\n\n{{ end }',
     'template: __alert_T:3: unexpected "}" in end'),
    ("{{ 'ab' }}",
     "template: __alert_T:1: malformed character constant: 'ab'"),
    ('{{ 1.2.3 }}',
     'template: __alert_T:1: unexpected ".3" in operand'),
    ('{{ 99999999999999999999 }}',
     'template: __alert_T:1: integer overflow: "99999999999999999999"'),
    ('{{ "x".y }}',
     'template: __alert_T:1: unexpected . after term "\\"x\\""'),
    ('{{ - 3 }}',
     'template: __alert_T:1: illegal number syntax: "-"'),
    ('{{ :x }}',
     'template: __alert_T:1: expected :='),
    ('{{ .a = 1 }}',
     'template: __alert_T:1: unexpected "=" in operand'),
    ('{{ else if 1 }}',
     'template: __alert_T:1: unexpected {{else}}'),
    ('{{ with 1 }}{{ else with 2 }}{{ end }}',
     'template: __alert_T:1: unexpected <with> in else'),
    ('{{ if }}{{ end }}',
     'template: __alert_T:1: missing value for if'),
    ('{{ nil.x }}',
     'template: __alert_T:1: unexpected . after term "nil"'),
    ('{{ if\n\n',
     'template: __alert_T:3: unclosed action started at __alert_T:1'),
    ('{{ printf "a"\n"b" ',
     'template: __alert_T:2: unclosed action started at __alert_T:1'),
    ('{{ range . }}{{ else if 1 }}{{ end }}{{ end }}',
     'template: __alert_T:1: unexpected <if> in input'),
    ('{{ with . }}{{ else if 1 }}x{{ end }}',
     'template: __alert_T:1: unexpected <if> in input'),
    ('{{ define "a" }}x{{ end }}{{ define "a" }}y{{ end }}',
     'template: __alert_T:1: template: multiple definition of template "a"'),
    ('{{ define "a" }}',
     'template: __alert_T:1: unexpected EOF'),
    ('{{ define 1 }}{{ end }}',
     'template: __alert_T:1: unexpected "1" in define clause'),
    ('{{ template 1 }}',
     'template: __alert_T:1: unexpected "1" in template clause'),
    ('{{ block "a" }}{{ end }}',
     'template: __alert_T:1: missing value for block clause'),
    ('{{ "\\q" }}',
     'template: __alert_T:1: invalid syntax'),
    ("{{ '\\q' }}",
     'template: __alert_T:1: invalid syntax'),
    ("{{ ''}}",
     'template: __alert_T:1: invalid syntax'),
    ("{{ 'a }}",
     'template: __alert_T:1: unterminated character constant'),
    ('{{ `abc }}',
     'template: __alert_T:1: unterminated raw quoted string'),
    ('{{ .x.y z }}',
     'template: __alert_T:1: function "z" not defined'),
    ('{{ |x }}',
     'template: __alert_T:1: unexpected "|" in command'),
    ('{{ printf , }}',
     'template: __alert_T:1: unexpected "," in operand'),
    ('{{ $x, $y := 1 }}',
     'template: __alert_T:1: too many declarations in command'),
    ('{{ range $x, 1 }}{{ end }}',
     'template: __alert_T:1: range can only initialize variables'),
    ('{{ range $x, $y := . }}{{ continue }}{{ end }}{{ continue }}',
     'template: __alert_T:1: {{continue}} outside {{range}}'),
    ('{{ 0x }}',
     'template: __alert_T:1: illegal number syntax: "0x"'),
    ('{{ 1e }}',
     'template: __alert_T:1: illegal number syntax: "1e"'),
    ('{{ 0x1.p }}',
     'template: __alert_T:1: illegal number syntax: "0x1.p"'),
    ('{{ 08 }}',
     'template: __alert_T:1: integer overflow: "08"'),
    ('{{ 1__0 }}',
     'template: __alert_T:1: illegal number syntax: "1__0"'),
    ('{{ _x }}',
     'template: __alert_T:1: function "_x" not defined'),
    ('{{ x_ }}',
     'template: __alert_T:1: function "x_" not defined'),
    ('{{ 1i2 }}',
     'template: __alert_T:1: bad number syntax: "1i2"'),
    ('{{ 1+2 }}',
     'template: __alert_T:1: bad number syntax: "1+2"'),
    ('{{ .x$ }}',
     "template: __alert_T:1: bad character U+0024 '$'"),
    ('{{ a$ }}',
     "template: __alert_T:1: bad character U+0024 '$'"),
    ('{{ printf "%d" (1 }}',
     'template: __alert_T:1: unclosed left paren'),
    ('{{ printf "%d" 1) }}',
     'template: __alert_T:1: unexpected ")" in command'),
    ('{{ end }}{{ "abc',
     'template: __alert_T:1: unexpected {{end}}'),
    ('{{ tmpl "a" . }}',
     'template: __alert_T:1: function "tmpl" not defined'),
    ('{{ true.x }}',
     'template: __alert_T:1: unexpected . after term "true"'),
    ('{{ .x | . }}',
     'template: __alert_T:1: non executable command in pipeline stage 2'),
    ('{{ if 1 }}{{ $z := 1 }}{{ end }}{{ $z }}',
     'template: __alert_T:1: undefined variable "$z"'),
    ('{{-/**/-}}',
     'template: __alert_T:1: illegal number syntax: "-"'),
    ('{{ /* x */ }}',
     'template: __alert_T:1: unexpected "/" in command'),
    ('{{ 1 }} {{ end }}',
     'template: __alert_T:1: unexpected {{end}}'),
    ('\n\n{{ 1 }}{{ \n\n foo }}',
     'template: __alert_T:5: function "foo" not defined'),
    ('{{ 0o17 }}{{ 0b2 }}',
     'template: __alert_T:1: bad number syntax: "0b2"'),
    ("{{ 1.5i }}{{ 'ab }}",
     'template: __alert_T:1: unterminated character constant'),
    ('{{\xa0}}',
     'template: __alert_T:1: unrecognized character in action: U+00A0'),
    ('{{ define "t" }}{{ $value }}{{ end }}{{ template "t" }}',
     'template: __alert_T:1: undefined variable "$value"'),
]

PARSES = [
    '{{ $labels.x | }}',
    '{{ 1 | printf }}{{ stripDomain "x" }}{{ toTime 1 }}',
    '{{ template "nope" }}',
    '{{ $ }}',
    '{{-3}}',
    '{{ $y = 1 }}',
    '{{ $x := 1 }}{{ $x.y.z }}',
    '{{ .a .b }}',
    '{{ $.x }}',
    '{{ (printf) }}',
    '{{ ((1)) }}',
    '{{ query "up" | first | value }}',
    '{{ 1 2 }}',
    '{{ $labels.job $value }}',
    '{{ "a" "b" }}',
    '{{ (1).x }}',
    '{{ .x | $labels }}',
    '{{ $labels := 1 }}{{ $labels }}',
    'ok {{/**/}}',
]

ALERT_TABLES = {"syntax": SYNTAX, "builtins": BUILTINS, "printf": PRINTF, "prometheus_funcs": PROMETHEUS_FUNCS,
                "exec_errors": EXEC_ERRORS}


@pytest.mark.parametrize(("text", "want"), [case for table in ALERT_TABLES.values() for case in table])
def test_alert_template_expands_as_promtool(text: str, want: str) -> None:
    assert alert_expand(text) == want


@pytest.mark.parametrize(("text", "want"), PARSE_ERRORS)
def test_parse_error_is_gos(text: str, want: str) -> None:
    with pytest.raises(T.TemplateError) as exc:
        T.compile(text, "__alert_T")
    assert str(exc.value) == want


@pytest.mark.parametrize("text", PARSES)
def test_what_go_parses_parses(text: str) -> None:
    assert T.compile(text, "__alert_T").text == text


# --- Prometheus's $value and the humanize functions over values that matter ---

VALUE_CASES = [
    (1234567.0, "{{ $value }}|{{ $value | humanize }}|{{ humanize1024 $value }}|{{ humanizePercentage $value }}",
     "1.234567e+06|1.235M|1.177Mi|1.235e+08%"),
    (1234567.0, "{{ humanizeDuration $value }}|{{ humanizeTimestamp $value }}",
     "14d 6h 56m 7s|1970-01-15 06:56:07 +0000 UTC"),
    (-0.000012, "{{ $value }}|{{ humanize $value }}|{{ humanizeDuration $value }}|{{ humanizePercentage $value }}",
     "-1.2e-05|-12u|-12us|-0.0012%"),
    (0.0, "{{ $value }}|{{ humanize $value }}|{{ humanizeDuration $value }}|{{ if $value }}t{{ else }}f{{ end }}",
     "0|0|0s|f"),
    (math.inf, '{{ $value }}|{{ humanize $value }}|{{ printf "%f|%5.1f|%05.1f|%+v" $value $value $value $value }}',
     "+Inf|+Inf|+Inf| +Inf| +Inf|+Inf"),
    (math.nan, '{{ $value }}|{{ humanize $value }}|{{ if eq $value $value }}eq{{ else }}ne{{ end }}', "NaN|NaN|ne"),
    (123456789012345680000.0, "{{ $value }}|{{ humanize $value }}", "1.2345678901234568e+20|123.5E"),
    (3661.0, "{{ humanizeDuration $value }}", "1h 1m 1s"),
    (0.1234, "{{ humanizePercentage $value }}", "12.34%"),
    (0.000012, "{{ humanize $value }}", "12u"),
]


@pytest.mark.parametrize(("value", "text", "want"), VALUE_CASES)
def test_value_formats(value: float, text: str, want: str) -> None:
    out, err = T.expand(text, T.AlertData(dict(LABELS), value), "__alert_T")
    assert err is None
    assert out == want


def test_float_printing_is_gos_shortest_g() -> None:
    """%v of a float64: shortest round-trip digits, %e form for exponents below -4 or from 6 on."""
    cases = [(0.0, "0"), (-0.0, "-0"), (1.0, "1"), (100000.0, "100000"), (999999.0, "999999"), (1e6, "1e+06"),
             (1234567.5, "1.2345675e+06"), (0.0001, "0.0001"), (0.00001, "1e-05"), (1e16, "1e+16"),
             (1.5e300, "1.5e+300"), (5e-324, "5e-324"), (0.1 + 0.2, "0.30000000000000004"), (-2.5, "-2.5"),
             (1e21, "1e+21")]
    for value, want in cases:
        assert T.compile("{{ . }}", "t", alert=False).execute(value) == want, value


# --- the alert data: $labels, $value, $externalLabels, $externalURL and the dot ---


def test_typical_annotation() -> None:
    data = T.AlertData({"instance": "db1:9100", "job": "node"}, 1234567.0)
    template = T.compile("{{ $labels.instance }} has {{ $value | humanize }} errors", "__alert_HighErrors")
    assert template.render(data) == "db1:9100 has 1.235M errors"
    assert template.render(T.AlertData({"instance": "db2:9100"}, 0.5)) == "db2:9100 has 500m errors"


def test_all_four_variables_and_their_dot_fields() -> None:
    data = T.AlertData({"instance": "a:1"}, 2.0, {"dc": "fra1", "env": "prod"}, "https://vigil.example/ui")
    text = ("{{ $labels.instance }}|{{ .Labels.instance }}|{{ $value }}|{{ .Value }}|{{ $externalLabels.dc }}|"
            "{{ .ExternalLabels.env }}|{{ $externalURL }}|{{ .ExternalURL }}|{{ externalURL }}|{{ pathPrefix }}")
    assert T.compile(text).render(data) == "a:1|a:1|2|2|fra1|prod|https://vigil.example/ui|" \
        "https://vigil.example/ui|https://vigil.example/ui|/ui"


def test_missing_label_is_empty_as_with_missingkey_zero() -> None:
    data = T.AlertData({"job": "node"}, 1.0)
    assert T.compile("[{{ $labels.instance }}][{{ index $labels \"instance\" }}][{{ .Labels.x }}]").render(data) \
        == "[][][]"


def test_query_with_the_rule_evaluators_samples() -> None:
    """The rule evaluator's TemplateData: PromQL samples (labels as pairs, `.v`) from its query function."""
    asked = []

    def query(expr: str) -> list[PromQLSample]:
        asked.append(expr)
        return [PromQLSample((("__name__", "up"), ("instance", "b:2")), 0, 0.0),
                PromQLSample((("__name__", "up"), ("instance", "a:1")), 0, 1.0)]

    data = TemplateData({"instance": "a:1"}, 3.0, {"dc": "x"}, "http://prom:9090/p", 0, query)
    text = ('{{ range query "up" | sortByLabel "instance" }}{{ .Labels.instance }}={{ .Value }} {{ end }}'
            '{{ with query "up" }}{{ . | first | label "instance" }}{{ end }} {{ $externalLabels.dc }}')
    assert T.expand_alert_template("__alert_X", text, data) == "a:1=1 b:2=0 b:2 x"
    assert asked == ["up", "up"]


def test_query_errors_and_absence() -> None:
    def failing(expr: str) -> list[PromQLSample]:
        raise ValueError("parse error: unexpected end of input")

    data = T.AlertData({}, 1.0)
    with pytest.raises(T.TemplateError, match=r'at <query "rate\(">: error calling query: parse error: unexpected'):
        T.compile('{{ query "rate(" }}').render(data, failing)
    with pytest.raises(T.TemplateError, match="error calling query: queries are not available"):
        T.compile('{{ query "up" }}').render(data)


# --- the API: expand, expand_alert_template, errors, the cache ---


def test_expand_gives_prometheus_text_and_error() -> None:
    data = T.AlertData({"instance": "a"}, 1.0)
    assert T.expand("{{ $labels.instance }} up", data, "__alert_Up") == ("a up", None)
    out, err = T.expand("{{ .Foo }}", data, "__alert_Up")
    want = ('error executing template __alert_Up: template: __alert_Up:1:115: executing "__alert_Up" at <.Foo>: '
            "can't evaluate field Foo in type struct { Labels map[string]string; ExternalLabels map[string]string; "
            "ExternalURL string; Value float64 }")
    assert err == want
    assert out == f"<error expanding template: {want}>"
    out, err = T.expand("{{ humanize }", data, "__alert_Up")
    assert err == 'error parsing template __alert_Up: template: __alert_Up:1: unexpected "}" in operand'
    assert out == f"<error expanding template: {err}>"


def test_expand_alert_template_raises_wrapped_errors() -> None:
    data = TemplateData({}, 1.0, {}, "", 0, lambda q: [])
    with pytest.raises(T.TemplateError) as exc:
        T.expand_alert_template("__alert_A", "{{ nope }}", data)
    assert str(exc.value) == 'error parsing template __alert_A: template: __alert_A:1: function "nope" not defined'
    with pytest.raises(T.TemplateError) as exc:
        T.expand_alert_template("__alert_A", "{{ gt $value 1 }}", data)
    assert str(exc.value) == ('error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" '
                              "at <gt $value 1>: error calling gt: incompatible types for comparison")


def test_errors_on_later_lines_count_columns_in_bytes() -> None:
    """Go reports line:column with the column in bytes from the line's start."""
    text = 'first line\n{{ $labels.job }} é {{ humanize "x" }}'
    with pytest.raises(T.TemplateError) as exc:
        T.compile(text, "__alert_L").render(T.AlertData({"job": "j"}, 1.0))
    # "humanize" starts at character 23 of line 2, byte 24 (the é takes two bytes)
    assert str(exc.value).startswith('template: __alert_L:2:24: executing "__alert_L" at <humanize "x">: ')
    with pytest.raises(T.TemplateError, match=r"^template: __alert_L:3: function \"nope\" not defined$"):
        T.compile("a\nb\n{{ nope }}", "__alert_L")


def test_compile_error_names_default_and_given() -> None:
    with pytest.raises(T.TemplateError, match=r"^template: __alert_:1: unclosed action$"):
        T.compile("{{")
    with pytest.raises(T.TemplateError, match=r"^template: __alert_Disk:1: unclosed action$"):
        T.compile("{{", "__alert_Disk")


def test_compile_is_cached_errors_too() -> None:
    text = "{{ $labels.instance }} cached {{ $value }}"
    assert T.compile(text, "__alert_C") is T.compile(text, "__alert_C")
    assert T.compile(text, "__alert_C") is not T.compile(text, "__alert_D")
    before = T._compiled.cache_info()
    for _ in range(3):
        with pytest.raises(T.TemplateError, match="function \"nope\" not defined"):
            T.compile("{{ nope }} cached", "__alert_C")
    after = T._compiled.cache_info()
    assert after.misses - before.misses == 1
    assert after.hits - before.hits == 2
    assert after.maxsize == T._CACHE_SIZE


def test_one_template_renders_many_alerts_independently() -> None:
    template = T.compile("{{ $x := $labels.n }}{{ range $labels }}{{ $x = . }}{{ end }}{{ $x }}/{{ $value }}")
    outs = [template.render(T.AlertData({"n": str(i), "z": f"z{i}"}, float(i))) for i in range(3)]
    assert outs == ["z0/0", "z1/1", "z2/2"]


def test_recursive_template_is_stopped() -> None:
    template = T.compile('{{ define "r" }}x{{ template "r" }}{{ end }}{{ template "r" }}', "__alert_R")
    with pytest.raises(T.TemplateError, match=r"exceeded maximum template depth"):
        template.render(T.AlertData({}, 1.0))


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(T.TemplateError, match="max expression depth exceeded"):
        T.compile("{{ " + "(" * 200 + "1" + ")" * 200 + " }}", "__alert_N")
    text = "{{ if 1 }}" * 2000 + "x" + "{{ end }}" * 2000
    try:
        out = T.compile(text, "__alert_N").render(T.AlertData({}, 1.0))
    except T.TemplateError as exc:
        assert "depth" in str(exc)
    else:
        assert out == "x"


def test_render_is_fast() -> None:
    """A typical annotation renders in a few microseconds once compiled (budget generous for slow CI)."""
    template = T.compile("{{ $labels.instance }} has {{ $value | humanize }} errors")
    data = T.AlertData({"instance": "db1:9100", "job": "node", "__name__": "errors"}, 1234567.0)
    n = 5000
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            template.render(data)
        best = min(best, (time.perf_counter() - start) / n)
    assert best < 50e-6, f"{best * 1e6:.1f} us per render"


# --- the same tables from the installed promtool ---


def _go_unquote(s: str) -> str:
    simple = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v", "\\": "\\", '"': '"'}
    out = []
    i = 0
    while i < len(s):
        if s[i] != "\\":
            out.append(s[i])
            i += 1
        elif s[i + 1] in simple:
            out.append(simple[s[i + 1]])
            i += 2
        else:
            width = {"x": 2, "u": 4, "U": 8}[s[i + 1]]
            out.append(chr(int(s[i + 2 : i + 2 + width], 16)))
            i += 2 + width
    return "".join(out)


def _promtool_expansions(promtool: str, templates: list[str], workdir: Path) -> list[str]:
    """What promtool's unit tester reports as the annotations of an alert whose expected labels are wrong."""
    annotations = {f"a{i}": text for i, text in enumerate(templates)}
    rules = {"groups": [{"name": "g", "rules": [{"alert": "T", "expr": "m", "annotations": annotations}]}]}
    (workdir / "rules.yml").write_text(yaml.safe_dump(rules))
    test = {"rule_files": ["rules.yml"], "evaluation_interval": "1m",
            "tests": [{"interval": "1m",
                       "input_series": [{"series": 'm{instance="host:9100",job="node"}', "values": str(VALUE)}],
                       "alert_rule_test": [{"eval_time": "0m", "alertname": "T",
                                            "exp_alerts": [{"exp_labels": {"never": "matches"}}]}]}]}
    (workdir / "test.yml").write_text(yaml.safe_dump(test))
    proc = subprocess.run([promtool, "test", "rules", "test.yml"], cwd=workdir, capture_output=True, text=True,
                          timeout=120, check=False)
    report = proc.stdout + proc.stderr
    got = re.search(r"got:\[.*?Annotations:\{(.*)\}\s*\n\s*\]", report, re.S)
    assert got is not None, report
    found = {int(m.group(1)): _go_unquote(m.group(2)) for m in re.finditer(r'a(\d+)="((?:[^"\\]|\\.)*)"', got.group(1))}
    return [found.get(i, "") for i in range(len(templates))]


def test_tables_match_promtool(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    cases = [case for table in ALERT_TABLES.values() for case in table]
    texts = [text for text, _ in cases]
    go = _promtool_expansions(promtool, texts, tmp_path)
    assert [(text, out) for text, out in zip(texts, go, strict=True)] == cases
    assert [alert_expand(text) for text in texts] == go


def test_parse_errors_match_promtool(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    texts = [text for text, _ in PARSE_ERRORS] + PARSES
    files = []
    for i, text in enumerate(texts):
        rules = {"groups": [{"name": "g", "rules": [{"alert": "T", "expr": "m", "annotations": {"a": text}}]}]}
        (tmp_path / f"r{i}.yml").write_text(yaml.safe_dump(rules))
        files.append(f"r{i}.yml")
    proc = subprocess.run([promtool, "check", "rules", *files], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, check=False)
    errors: dict[int, str] = {}
    for line in (proc.stdout + proc.stderr).splitlines():
        m = re.match(r'r(\d+)\.yml: group "g", rule 1, "T": annotation "a": (.*)$', line)
        if m:
            errors[int(m.group(1))] = m.group(2)
    assert [errors.get(i) for i in range(len(texts))] == [want for _, want in PARSE_ERRORS] + [None] * len(PARSES)
