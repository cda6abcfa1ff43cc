#include "svcmap/app/map_page.h"

#include "fmt/format.h"

namespace svcmap::app {
namespace {

// The page itself. Rates are computed in the browser from two fetches, so
// any number of viewers can watch without the agent keeping state for them.
constexpr const char* kPage = R"html(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>svcmap map: @MACHINE@</title>
<style>
body{font-family:sans-serif;margin:1em 1.5em;color:#222}
h1{font-size:1.3em;margin:.2em 0}
#status{color:#666;font-size:.9em}
#graph svg{max-width:100%;height:auto}
table{border-collapse:collapse;margin-top:1em}
td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.err{color:#b00}
</style></head><body>
<h1>svcmap: services and who talks to whom</h1>
<div id="status">loading…</div>
<div id="graph"></div>
<table id="edges"><thead><tr><th>from</th><th>to</th><th>port</th><th>bytes/s</th>
<th>total bytes</th><th>connections</th><th>errors/s</th><th>retransmits/s</th><th>rtt</th>
</tr></thead><tbody></tbody></table>
<table id="unmatched" hidden><thead><tr><th>from</th><th>to</th><th>not joined because</th>
</tr></thead><tbody></tbody></table>
<script>
"use strict";
const REFRESH_MS = 3000;
let prev = null;
function human(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : Math.round(n)) + " " + u[i];
}
function latency(us) {
  if (us == null) return "";
  return us < 1000 ? us + " us" : us < 1e6 ? (us / 1000).toFixed(1) + " ms"
                                           : (us / 1e6).toFixed(2) + " s";
}
function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
}
async function tick() {
  const status = document.getElementById("status");
  let doc;
  try {
    const r = await fetch("/api/map", {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status + ": " + await r.text());
    doc = await r.json();
  } catch (e) {
    status.textContent = "cannot reach the agent: " + e.message;
    status.className = "err";
    return;
  }
  const now = Date.now();
  const g = doc.graph;
  const totals = {};
  const svg = doc.svg.slice(doc.svg.indexOf("<svg"));
  document.getElementById("graph").innerHTML = svg;
  const body = document.querySelector("#edges tbody");
  body.textContent = "";
  g.edges.forEach((e, i) => {
    const key = e.src + ">" + e.dst + ":" + e.dst_port;
    const total = e.bytes_sent + e.bytes_received;
    const errors = e.failed + e.resets_received + e.resets_sent;
    totals[key] = {total, errors, retransmits: e.retransmits};
    let rate = 0, errRate = 0, retransRate = 0;
    if (prev && key in prev.totals && now > prev.t) {
      const was = prev.totals[key], secs = (now - prev.t) / 1000;
      rate = Math.max(0, total - was.total) / secs;
      errRate = Math.max(0, errors - was.errors) / secs;
      retransRate = Math.max(0, e.retransmits - was.retransmits) / secs;
    }
    const tr = document.createElement("tr");
    tr.className = "edge" + (errRate > 0 ? " err" : "");
    cell(tr, e.src); cell(tr, e.dst); cell(tr, String(e.dst_port), "n");
    cell(tr, human(rate) + "/s", "n"); cell(tr, human(total), "n");
    cell(tr, String(e.connections), "n");
    cell(tr, errRate.toFixed(1), "n"); cell(tr, retransRate.toFixed(1), "n");
    cell(tr, latency(e.rtt_us), "n");
    body.appendChild(tr);
    // The rate on the drawn edge too (its label is the last text in it),
    // and its colour by what went wrong since the last look: red for
    // failed connects and resets, orange for retransmits.
    const drawn = document.getElementById("e" + i);
    const texts = drawn ? drawn.querySelectorAll("text") : [];
    if (texts.length) texts[texts.length - 1].textContent += " · " + human(rate) + "/s";
    if (drawn && prev) {
      const colour = errRate > 0 ? "red" : retransRate > 0 ? "orange" : "black";
      for (const el of drawn.querySelectorAll("path, polygon")) {
        el.setAttribute("stroke", colour);
        if (el.tagName === "polygon") el.setAttribute("fill", colour);
      }
      for (const t of texts) t.setAttribute("fill", colour === "black" ? "black" : colour);
    }
  });
  const um = document.getElementById("unmatched");
  const ub = um.querySelector("tbody");
  ub.textContent = "";
  um.hidden = g.unmatched.length === 0;
  for (const u of g.unmatched) {
    const tr = document.createElement("tr");
    cell(tr, u.src_instance_id); cell(tr, u.dst_ip + ":" + u.dst_port);
    cell(tr, u.reason + (u.candidates.length ? " (" + u.candidates.join(", ") + ")" : ""));
    ub.appendChild(tr);
  }
  status.className = "";
  status.textContent = g.nodes.length + " nodes, " + g.edges.length + " edges, as of " +
      new Date(now).toLocaleTimeString() + " (every " + REFRESH_MS / 1000 + " s)";
  prev = {t: now, totals};
}
tick();
setInterval(tick, REFRESH_MS);
</script></body></html>
)html";

}  // namespace

std::string MapPage(std::string_view machine) {
  std::string page = kPage;
  std::string escaped;
  for (char c : machine) {
    if (c == '<') escaped += "&lt;";
    else if (c == '&') escaped += "&amp;";
    else escaped.push_back(c);
  }
  for (size_t at; (at = page.find("@MACHINE@")) != std::string::npos;)
    page.replace(at, 9, escaped);
  return page;
}

}  // namespace svcmap::app
