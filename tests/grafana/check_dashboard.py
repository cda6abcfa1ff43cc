#!/usr/bin/env python3
"""Runs every query of a Grafana dashboard against a Prometheus-compatible
store and checks what its panels would get, since Grafana itself is not in
Debian: each query must succeed; the table queries become data frames the
way Grafana's Prometheus data source makes them (one frame per query, a
column per label, "Value #<refId>" when a panel has several queries), the
panel's transformations that the dashboard uses (joinByField, organize) are
applied, and the Node Graph panel's frames must follow Grafana's node-graph
contract: nodes with id, title, subtitle, mainstat, secondarystat and arc__*
fields whose arcs add up to 1; edges with id, source, target, mainstat,
secondarystat. Exit 0 and a JSON summary, or 1 and the reasons."""
import argparse
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

NODE_FIELDS = ["id", "title", "subtitle", "mainstat", "secondarystat"]
EDGE_FIELDS = ["id", "source", "target", "mainstat", "secondarystat"]


def query(url, expr, instant):
    params = {"query": expr}
    if instant:
        path = "/api/v1/query"
    else:
        now = time.time()
        path = "/api/v1/query_range"
        # A short range at a fine step: a store fed for a few seconds has
        # points in it (the store aligns a coarse step's points away).
        params.update(start=f"{now - 60:.3f}", end=f"{now:.3f}", step="1")
    try:
        with urllib.request.urlopen(url + path + "?" + urllib.parse.urlencode(params), timeout=30) as r:
            doc = json.load(r)
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"HTTP {e.code}: {e.read()[:300]!r}") from e
    if doc.get("status") != "success":
        raise RuntimeError(doc.get("error", "no status"))
    return doc["data"]["result"]


def frame(ref, result, value_name):
    labels = sorted({k for r in result for k in r["metric"] if k != "__name__"})
    fields = ["Time"] + labels + [value_name]
    rows = []
    for r in result:
        t, v = r["value"]
        rows.append([t] + [r["metric"].get(k, "") for k in labels] + [float(v)])
    return {"refId": ref, "fields": fields, "rows": rows}


def matches(flt, ref):
    if not flt:
        return True
    if flt.get("id") != "byRefId":
        raise RuntimeError(f"transformation filter {flt.get('id')!r} not understood")
    pattern = flt["options"]
    if pattern.startswith("/") and pattern.endswith("/"):
        return re.search(pattern[1:-1], ref) is not None
    return ref in pattern.split("|")


def join_by_field(frames, options, flt):
    picked = [f for f in frames if matches(flt, f["refId"])]
    rest = [f for f in frames if not matches(flt, f["refId"])]
    if not picked:
        return frames
    key = options["byField"]
    if options.get("mode", "outer") != "outer":
        raise RuntimeError("joinByField: only the outer mode is checked")
    fields, seen_time = [key], 0
    rows = {}
    for f in picked:
        if key not in f["fields"]:
            raise RuntimeError(f"joinByField: frame {f['refId']} has no field {key!r}")
        ki = f["fields"].index(key)
        names = []
        for n in f["fields"]:
            if n == key:
                continue
            if n == "Time":
                seen_time += 1
                n = f"Time {seen_time}"
            names.append(n)
        base = len(fields)
        fields.extend(names)
        for r in f["rows"]:
            row = rows.setdefault(r[ki], {})
            others = [v for i, v in enumerate(r) if i != ki]
            for i, v in enumerate(others):
                row[base + i] = v
    table = [[k] + [rows[k].get(i) for i in range(1, len(fields))] for k in sorted(rows)]
    return rest + [{"refId": "+".join(f["refId"] for f in picked), "fields": fields, "rows": table}]


def organize(frames, options):
    out = []
    for f in frames:
        keep = [i for i, n in enumerate(f["fields"]) if not options.get("excludeByName", {}).get(n)]
        names = [options.get("renameByName", {}).get(f["fields"][i], f["fields"][i]) for i in keep]
        out.append({"refId": f["refId"], "fields": names,
                    "rows": [[r[i] for i in keep] for r in f["rows"]]})
    return out


def check_node_graph(frames, problems):
    nodes = [f for f in frames if "id" in f["fields"] and "source" not in f["fields"]]
    edges = [f for f in frames if "source" in f["fields"] and "target" in f["fields"]]
    if len(nodes) != 1 or len(edges) != 1:
        problems.append(f"node graph: want one nodes and one edges frame, got {len(nodes)} and {len(edges)}")
        return {}, []
    n, e = nodes[0], edges[0]
    for want, f, what in ((NODE_FIELDS, n, "nodes"), (EDGE_FIELDS, e, "edges")):
        missing = [x for x in want if x not in f["fields"]]
        if missing:
            problems.append(f"node graph {what} frame lacks {missing}: has {f['fields']}")
    arcs = [i for i, x in enumerate(n["fields"]) if x.startswith("arc__")]
    if not arcs:
        problems.append("node graph nodes frame has no arc__ field")
    col = {x: i for i, x in enumerate(n["fields"])}
    titles = {}
    for r in n["rows"]:
        if arcs and abs(sum((r[i] or 0) for i in arcs) - 1) > 1e-6:
            problems.append(f"node {r[col['id']]}: arcs add up to {sum((r[i] or 0) for i in arcs)}")
        if any(r[col.get(x, 0)] in (None, "") for x in NODE_FIELDS if x in col and x != "secondarystat"):
            problems.append(f"node row with an empty field: {r}")
        titles[r[col["id"]]] = r[col["title"]] if "title" in col else None
    ecol = {x: i for i, x in enumerate(e["fields"])}
    pairs = []
    for r in e["rows"]:
        s, t = r[ecol["source"]], r[ecol["target"]]
        pairs.append((titles.get(s, s), titles.get(t, t)))
    return titles, pairs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="the store's query API, e.g. http://127.0.0.1:8428")
    ap.add_argument("--dashboard", required=True)
    ap.add_argument("--expect-services", default="", help="titles the node graph must show, a,b,c")
    ap.add_argument("--expect-edges", default="", help="caller>callee service pairs, a>b,b>c")
    ap.add_argument("--may-be-empty", action="append", default=[],
                    help="a panel title whose queries may find nothing here; repeatable")
    args = ap.parse_args()
    dash = json.load(open(args.dashboard))
    problems, summary = [], {"panels": []}
    for p in dash["panels"]:
        targets = p.get("targets", [])
        frames = []
        for t in targets:
            instant = t.get("instant", False) and t.get("format") == "table"
            try:
                result = query(args.url, t["expr"], instant)
            except Exception as e:  # noqa: BLE001 - every failure is reported
                problems.append(f"panel {p['title']!r} query {t['refId']}: {e}")
                continue
            if not result and p["title"] not in args.may_be_empty:
                problems.append(f"panel {p['title']!r} query {t['refId']}: no series")
            if instant:
                frames.append(frame(t["refId"], result,
                                    "Value" if len(targets) == 1 else f"Value #{t['refId']}"))
        for tr in p.get("transformations", []):
            if tr["id"] == "joinByField":
                frames = join_by_field(frames, tr["options"], tr.get("filter"))
            elif tr["id"] == "organize":
                frames = organize(frames, tr["options"])
            else:
                problems.append(f"panel {p['title']!r}: transformation {tr['id']!r} not checked")
        entry = {"title": p["title"], "type": p["type"], "frames": [f["fields"] for f in frames]}
        if p["type"] == "nodeGraph":
            titles, pairs = check_node_graph(frames, problems)
            entry["nodes"] = sorted(set(v for v in titles.values() if v))
            entry["edges"] = sorted(f"{a}>{b}" for a, b in set(pairs))
            for s in filter(None, args.expect_services.split(",")):
                if s not in entry["nodes"]:
                    problems.append(f"node graph: no node titled {s!r}: {entry['nodes']}")
            for e in filter(None, args.expect_edges.split(",")):
                if e not in entry["edges"]:
                    problems.append(f"node graph: no edge {e!r}: {entry['edges']}")
        summary["panels"].append(entry)
    summary["problems"] = problems
    print(json.dumps(summary, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
