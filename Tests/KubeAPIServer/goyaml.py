"""How kube-apiserver reads a server-side apply body (application/apply-patch+yaml), for the test
server: not a JSON parser, whatever the client sends.

staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go (applyPatcher) decodes the body with
k8s.io/apimachinery/pkg/util/yaml Unmarshal -> sigs.k8s.io/yaml Unmarshal (yaml.go
yamlToJSONTarget) -> go-yaml v2 (YAML 1.1: gopkg.in/yaml.v2, later sigs.k8s.io/yaml/goyaml.v2 and
go.yaml.in/yaml/v2, one code base). A failure is 400 BadRequest "error decoding YAML: error
converting YAML to JSON: yaml: ...". After the apply, with fieldValidation Strict or Warn (Warn is
the default, handlers/rest.go fieldValidation), the body is decoded again with UnmarshalStrict:
Strict answers 400 "error strict decoding YAML: ...", Warn sends each problem as a warning.

What go-yaml v2 does with JSON that a JSON parser does not, each from its source:
- readerc.go yaml_parser_update_buffer: only tab, LF, CR, 0x20-0x7E, NEL, 0xA0-0xD7FF,
  0xE000-0xFFFD and 0x10000-0x10FFFF may appear: "control characters are not allowed" (no line);
  a byte order mark at the start is skipped; invalid UTF-8 is refused.
- scannerc.go yaml_parser_scan_flow_scalar: the escapes of a double-quoted scalar are
  0 a b t TAB n v f r e SPACE " ' \\ N _ L P, xHH, uHHHH, UHHHHHHHH; any other (`\\/` among them)
  is "found unknown escape character"; a code point in D800-DFFF (so every surrogate pair) or
  beyond 10FFFF is "found invalid Unicode character escape code". A line break inside the
  scalar folds to a space (NEL is a line break).
- scannerc.go yaml_simple_key_is_valid: a key is possible only within 1024 characters of its
  start and on one line: a longer key, or a line break before its ':', is "did not find expected
  ',' or '}'" (parserc.go yaml_parser_parse_flow_mapping_key).
- scannerc.go max_flow_level: nesting deeper than 10000 is "exceeded max depth of 10000".
- scannerc.go yaml_parser_scan_to_next_token: a tab is whitespace inside [] and {}, but not before
  the top-level value: "found character that cannot start any token".
- resolve.go resolve: plain scalars -0 -> 0, integers beyond 64 bits -> float, a float that
  overflows -> the string itself.
- decode.go: one document is read; whatever follows the first value is ignored.
- decode.go decoder.setMapIndex: a duplicate key keeps the last value; strictly it is
  'line N: key "a" already set in map' ("yaml: unmarshal errors:\n  " before the list).
Bodies that are not JSON-shaped (block YAML) are read by PyYAML after the same character and
escape checks: close enough for what the tests send, which is JSON.
"""
import json, math, re, sys

# The flow parser recurses twice per level: a body nested up to go-yaml's limit (10000 levels) must
# be read, not fail as a Python RecursionError (a 500 where the real server answers).
sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * 10000 + 1000))

MAX_DEPTH = 10000
ESCAPES = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f", "r": "\r", "e": "\x1b",
           " ": " ", '"': '"', "'": "'", "\\": "\\", "N": "\x85", "_": "\xa0", "L": "\u2028", "P": "\u2029"}
HEX_LENGTH = {"x": 2, "u": 4, "U": 8}
BREAKS = "\n\r\x85"


class YAMLError(Exception):
    """A go-yaml error: str() is what follows "yaml: "."""


def allowed(c):
    o = ord(c)
    return (o in (0x09, 0x0A, 0x0D, 0x85) or 0x20 <= o <= 0x7E or 0xA0 <= o <= 0xD7FF or
            0xE000 <= o <= 0xFFFD or 0x10000 <= o <= 0x10FFFF)


def read_text(raw):
    """readerc.go: UTF-8 only, allowed characters only, a leading BOM dropped."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise YAMLError("invalid leading UTF-8 octet")
    if text.startswith("\ufeff"):
        text = text[1:]
    if any(not allowed(c) for c in text):
        raise YAMLError("control characters are not allowed")
    return text


class Flow:
    """The JSON subset of YAML's flow syntax, read as go-yaml reads it."""

    def __init__(self, text):
        self.s, self.i, self.line = text, 0, 1
        self.duplicates = []   # (line, key)

    def fail(self, msg, parser=False):
        """yaml.go failf and parser.fail: "line N: " unless the mark is on the first line; a
        scanner error counts lines from 1, a parser error (one about the token sequence) from 0."""
        n = self.line - 1 if parser else self.line
        raise YAMLError((f"line {n}: " if self.line > 1 else "") + msg)

    def skip(self, top=False):
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == "\t" and top:
                self.fail("found character that cannot start any token")
            if c in " \t\r":
                self.i += 1
            elif c == "\n":
                self.i += 1
                self.line += 1
            else:
                return

    def value(self, depth):
        self.skip(top=depth == 0)
        if self.i >= len(self.s):
            return None
        c = self.s[self.i]
        if c in "{[":
            if depth + 1 > MAX_DEPTH:
                self.fail(f"exceeded max depth of {MAX_DEPTH}")
            return self.mapping(depth + 1) if c == "{" else self.sequence(depth + 1)
        if c == '"':
            return self.string()[0]
        return self.plain()

    def mapping(self, depth):
        self.i += 1
        out = {}
        while True:
            self.skip()
            if self.i < len(self.s) and self.s[self.i] == "}":
                self.i += 1
                return out
            if self.i >= len(self.s) or self.s[self.i] != '"':
                raise NotJSON()
            start, line = self.i, self.line
            key, _ = self.string()
            self.skip()
            if self.i >= len(self.s) or self.s[self.i] != ":":
                raise NotJSON()
            # A simple key: on one line, at most 1024 characters from its start to the ':'.
            if self.line != line or self.i - start > 1024:
                self.fail("did not find expected ',' or '}'", parser=True)
            self.i += 1
            if key in out:
                self.duplicates.append((line, key))
            out[key] = self.value(depth)
            self.skip()
            if self.i < len(self.s) and self.s[self.i] == ",":
                self.i += 1
            elif not (self.i < len(self.s) and self.s[self.i] == "}"):
                self.fail("did not find expected ',' or '}'", parser=True)

    def sequence(self, depth):
        self.i += 1
        out = []
        while True:
            self.skip()
            if self.i < len(self.s) and self.s[self.i] == "]":
                self.i += 1
                return out
            out.append(self.value(depth))
            self.skip()
            if self.i < len(self.s) and self.s[self.i] == ",":
                self.i += 1
            elif not (self.i < len(self.s) and self.s[self.i] == "]"):
                self.fail("did not find expected ',' or ']'", parser=True)

    def string(self):
        self.i += 1
        out = []
        while True:
            if self.i >= len(self.s):
                self.fail("found unexpected end of stream")
            c = self.s[self.i]
            if c == '"':
                self.i += 1
                return "".join(out), None
            if c == "\\":
                out.append(self.escape())
                continue
            if c in BREAKS:
                # A line break in a quoted scalar folds into one space.
                if c == "\r" and self.s[self.i + 1:self.i + 2] == "\n":
                    self.i += 1
                self.i += 1
                if c != "\x85":
                    self.line += 1
                while out and out[-1] in " \t":
                    out.pop()
                while self.i < len(self.s) and self.s[self.i] in " \t":
                    self.i += 1
                out.append(" ")
                continue
            out.append(c)
            self.i += 1

    def escape(self):
        e = self.s[self.i + 1:self.i + 2]
        if e in ESCAPES:
            self.i += 2
            return ESCAPES[e]
        if e in HEX_LENGTH:
            n = HEX_LENGTH[e]
            digits = self.s[self.i + 2:self.i + 2 + n]
            if len(digits) != n or not all(d in "0123456789abcdefABCDEF" for d in digits):
                self.fail("did not find expected hexdecimal number")
            v = int(digits, 16)
            if 0xD800 <= v <= 0xDFFF or v > 0x10FFFF:
                self.fail("found invalid Unicode character escape code")
            self.i += 2 + n
            return chr(v)
        if e in BREAKS:
            raise NotJSON()   # an escaped line break: YAML only, PyYAML reads it
        self.fail("found unknown escape character")

    def plain(self):
        m = re.compile(r"[^\s,\[\]{}]+").match(self.s, self.i)
        if not m:
            raise NotJSON()
        self.i = m.end()
        return resolve(m.group(0))


class NotJSON(Exception):
    pass


INT = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")
FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


def resolve(token):
    """resolve.go for the plain scalars JSON has (and YAML 1.1's booleans and nulls)."""
    if token in ("true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "y", "Y"):
        return True
    if token in ("false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", "n", "N"):
        return False
    if token in ("null", "Null", "NULL", "~"):
        return None
    if INT.match(token):
        v = int(token)
        if -(1 << 63) <= v < (1 << 64):
            return v           # -0 is 0
        return float(v)        # beyond 64 bits: ParseFloat, precision lost
    if FLOAT.match(token):
        v = float(token)
        return token if math.isinf(v) else v   # ParseFloat overflows: the string stays a string
    return token


DQ = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)


def check_escapes(text):
    """The escape rules above for every double-quoted scalar of a block YAML document."""
    for m in DQ.finditer(text):
        f = Flow(m.group(0))
        f.line = text.count("\n", 0, m.start()) + 1
        try:
            f.string()
        except NotJSON:
            pass


def decode(raw, strict=False):
    """The body as kube-apiserver reads it: (object, problems a strict decode reports). Raises
    YAMLError with go-yaml's message."""
    text = read_text(raw)
    stripped = text.lstrip(" \t\r\n")
    if stripped[:1] in ("{", "["):
        f = Flow(text)
        try:
            obj = f.value(0)
            return obj, [f'line {line}: key {json.dumps(k)} already set in map' for line, k in f.duplicates]
        except NotJSON:
            pass
    check_escapes(text)
    import yaml
    try:
        return yaml.safe_load(text), []
    except yaml.YAMLError as e:
        raise YAMLError(str(e).splitlines()[0])
