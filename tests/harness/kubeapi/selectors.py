"""Label and field selectors with the grammar and semantics of k8s.io/apimachinery/pkg/labels|fields."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import errors
from .resources import Obj, ResourceType, field_label


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key)
        if self.op in ("=", "in"):
            return has and value in self.values
        if self.op in ("!=", "notin"):
            # Like labels.Requirement: an absent key satisfies "!=" and "notin".
            return not has or value not in self.values
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op in ("gt", "lt"):
            try:
                v = int(value or "")
                ref = int(self.values[0])
            except ValueError:
                return False
            return v > ref if self.op == "gt" else v < ref
        return False


LabelSelector = tuple[Requirement, ...]

_TOKEN = re.compile(r"\s*(==|!=|=|!|\(|\)|,|>|<|[A-Za-z0-9_./-]+)")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse ``a=b,c!=d,e in (x,y),f notin (z),g,!h``; 400 BadRequest on a syntax error."""
    if not text or not text.strip():
        return ()
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            raise errors.bad_request(f"unable to parse requirement: invalid label selector {text!r}")
        tokens.append(m.group(1))
        pos = m.end()

    reqs: list[Requirement] = []
    i = 0

    def fail(msg: str) -> errors.ApiError:
        return errors.bad_request(f"unable to parse requirement: {msg}")

    def ident(j: int) -> str:
        if j >= len(tokens) or not re.fullmatch(r"[A-Za-z0-9_./-]+", tokens[j]):
            raise fail(f"found '{tokens[j] if j < len(tokens) else ''}', expected: identifier")
        return tokens[j]

    while i < len(tokens):
        if tokens[i] == "!":
            reqs.append(Requirement(ident(i + 1), "!"))
            i += 2
        else:
            key = ident(i)
            i += 1
            if i >= len(tokens) or tokens[i] == ",":
                reqs.append(Requirement(key, "exists"))
            elif tokens[i] in ("=", "==", "!="):
                op = "!=" if tokens[i] == "!=" else "="
                value = ""
                if i + 1 < len(tokens) and tokens[i + 1] not in (",",):
                    value = ident(i + 1)
                    i += 1
                reqs.append(Requirement(key, op, (value,)))
                i += 1
            elif tokens[i] in ("in", "notin"):
                op = tokens[i]
                if i + 1 >= len(tokens) or tokens[i + 1] != "(":
                    raise fail("found '', expected: '('")
                i += 2
                values: list[str] = []
                while i < len(tokens) and tokens[i] != ")":
                    if tokens[i] == ",":
                        i += 1
                        continue
                    values.append(ident(i))
                    i += 1
                if i >= len(tokens):
                    raise fail("found '', expected: ')'")
                i += 1
                reqs.append(Requirement(key, op, tuple(values)))
            elif tokens[i] in (">", "<"):
                reqs.append(Requirement(key, "gt" if tokens[i] == ">" else "lt", (ident(i + 1),)))
                i += 2
            else:
                raise fail(f"found '{tokens[i]}', expected: '=', '!=', '==', 'in', notin'")
        if i < len(tokens):
            if tokens[i] != ",":
                raise fail(f"found '{tokens[i]}', expected: ','")
            i += 1
    return tuple(reqs)


def labels_match(selector: LabelSelector, labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    return all(r.matches(labels) for r in selector)


def selector_object_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    """A metav1.LabelSelector (matchLabels + matchExpressions); None or {} selects everything."""
    if not selector:
        return True
    labels = labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass(frozen=True)
class FieldTerm:
    label: str
    negate: bool
    value: str
    accessor: Callable[[Obj], str]

    def matches(self, obj: Obj) -> bool:
        return (self.accessor(obj) == self.value) != self.negate


FieldSelector = tuple[FieldTerm, ...]


def _split_unescaped(text: str, sep: str) -> list[str]:
    # fields.ParseSelector allows "\," and "\=" escapes inside values.
    parts, cur, i = [], "", 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            cur += text[i : i + 2]
            i += 2
            continue
        if text[i] == sep:
            parts.append(cur)
            cur = ""
        else:
            cur += text[i]
        i += 1
    parts.append(cur)
    return parts


def _unescape(v: str) -> str:
    return re.sub(r"\\(.)", r"\1", v)


def parse_field_selector(rt: ResourceType, text: str | None) -> FieldSelector:
    """``a=b,c!=d,e==f`` (comma = AND); unsupported labels are a 400 like the real server."""
    if not text or not text.strip():
        return ()
    terms: list[FieldTerm] = []
    for part in _split_unescaped(text, ","):
        if not part:
            continue
        m = re.match(r"^([^=!]+)(!=|==|=)(.*)$", part)
        if not m:
            raise errors.bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        label, op, value = m.group(1).strip(), m.group(2), _unescape(m.group(3))
        terms.append(FieldTerm(label, op == "!=", value, field_label(rt, label)))
    return tuple(terms)


def fields_match(selector: FieldSelector, obj: Obj) -> bool:
    return all(t.matches(obj) for t in selector)


def name_from_field_selector(selector: FieldSelector) -> str:
    """metadata.name=X in a list/watch: RBAC checks resourceNames against it, as kube-apiserver does."""
    for t in selector:
        if t.label == "metadata.name" and not t.negate:
            return t.value
    return ""
