#ifndef SVCMAP_UI_TOP_MODEL_H_
#define SVCMAP_UI_TOP_MODEL_H_

// What `svcmap top` shows, as data: the rows of each view with their rates
// between two samples, sorted and filtered. Pure: no terminal, no I/O, so
// the rate maths and the key handling are tested on their own.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "svcmap/topology/graph.h"
#include "svcmap/topology/model.h"

namespace svcmap::ui {

// One look at the source: everything cumulative (bytes and connections
// since each agent started), stamped with when it was taken.
struct Sample {
  int64_t time_ms = 0;
  std::string host;     // where top runs, or the source
  std::string backend;  // the capture backend, or "agents" / "tsdb"
  uint64_t events = 0;  // lifecycle events so far (local source only)
  uint64_t drops = 0;   // kernel drops so far (local source only)
  bool has_processes = true;  // a store has no per-process figures
  topology::Graph graph;                       // the joined edges
  std::vector<topology::Process> processes;
};

enum class Mode { kEdges, kServices, kProcesses };
std::string_view ModeName(Mode m);

struct Column {
  std::string title;
  bool numeric = false;
  int width = 0;  // at least this many characters
  // Left out, whole, from a terminal too narrow for every column (trailing
  // ones only), so that the others are not cut.
  bool optional = false;
};

struct Row {
  std::vector<std::string> text;  // one per column, as shown
  std::vector<double> value;      // one per column, for sorting (numeric columns)
  std::string key;                // stays the same across samples
};

struct Table {
  std::vector<Column> columns;
  std::vector<Row> rows;
};

// (now - before) / seconds, never negative (a counter reset reads as 0) and
// 0 when no time has passed.
double Rate(uint64_t now, uint64_t before, double seconds);

// The rows of `mode` for `cur`, with rates against `prev` (null: none yet).
Table BuildTable(Mode mode, const Sample* prev, const Sample& cur);

// Rows whose text contains `filter` (case-insensitive), sorted by column
// `sort_column` (numeric columns by value), descending if asked; ties by
// key, so the order is stable from one refresh to the next.
void FilterAndSort(Table& t, std::string_view filter, size_t sort_column, bool descending);

// The table as lines at most `width` characters wide (text cells are cut,
// never the numbers), a header line first.
std::vector<std::string> FormatTable(const Table& t, size_t width, size_t sort_column,
                                     bool descending);

// "12.3 KiB/s", "0 B/s".
std::string HumanRate(double bytes_per_s);

// The state `top` keeps between keys: the view, the sort, the filter, a
// pause. Keys are ncurses key codes or plain characters.
struct TopState {
  Mode mode = Mode::kEdges;
  size_t sort_column = 3;  // OUT/s, in every view
  bool descending = true;
  bool paused = false;
  bool editing_filter = false;
  bool quit = false;
  std::string filter;
  std::string filter_draft;  // while editing
};

// Applies one key; returns true if the screen should be redrawn.
bool HandleKey(TopState& s, int key, size_t columns);
// The footer hint for the current state.
std::string FooterHint(const TopState& s);

// The header: host, backend, event rate, drops, time, pause.
std::string HeaderLine(const Sample* prev, const Sample& cur, bool paused);

}  // namespace svcmap::ui

#endif  // SVCMAP_UI_TOP_MODEL_H_
