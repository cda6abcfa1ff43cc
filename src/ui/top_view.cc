#include "svcmap/ui/top_view.h"

#include <curses.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

#include "fmt/format.h"

namespace svcmap::ui {
namespace {

static_assert(KEY_LEFT == 0404 && KEY_RIGHT == 0405 && KEY_BACKSPACE == 0407 && KEY_ENTER == 0527,
              "top_model.cc's key codes are ncurses'");

// The latest two samples, published whole by the sampler thread.
class Board {
 public:
  void Publish(std::shared_ptr<const Sample> s) {
    std::lock_guard<std::mutex> lock(mu_);
    prev_ = std::move(cur_);
    cur_ = std::move(s);
    error_.clear();
    ++generation_;
    cv_.notify_all();
  }
  void Fail(std::string why) {
    std::lock_guard<std::mutex> lock(mu_);
    error_ = std::move(why);
    ++generation_;
    cv_.notify_all();
  }
  struct View {
    std::shared_ptr<const Sample> prev, cur;
    std::string error;
    uint64_t generation = 0;
  };
  View Get() const {
    std::lock_guard<std::mutex> lock(mu_);
    return {prev_, cur_, error_, generation_};
  }
  // Waits up to `d` for a generation newer than `seen`.
  void Wait(uint64_t seen, absl::Duration d) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, absl::ToChronoMilliseconds(d), [&] { return generation_ != seen; });
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<const Sample> prev_, cur_;
  std::string error_;
  uint64_t generation_ = 0;
};

// Samples every `interval` until stopped, on its own thread.
class Sampler {
 public:
  Sampler(const SampleFn& fn, absl::Duration interval, Board& board)
      : thread_([this, fn, interval, &board] {
          absl::Time next = absl::Now();
          while (!stop_.load()) {
            absl::StatusOr<Sample> s = fn();
            if (s.ok())
              board.Publish(std::make_shared<const Sample>(*std::move(s)));
            else
              board.Fail(std::string(s.status().message()));
            next += interval;
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait_until(lock, absl::ToChronoTime(next), [&] { return stop_.load(); });
          }
        }) {}
  ~Sampler() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// SIGINT or SIGTERM pending (they are blocked, so they wait to be taken).
bool Signalled() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  timespec zero{};
  int sig = sigtimedwait(&set, nullptr, &zero);
  return sig == SIGINT || sig == SIGTERM;
}

std::vector<std::string> Frame(const Board::View& v, const TopState& s, size_t width) {
  std::vector<std::string> lines;
  if (!v.cur) {
    lines.push_back(v.error.empty() ? "svcmap top: waiting for the first sample..."
                                    : "svcmap top: " + v.error);
    return lines;
  }
  lines.push_back(HeaderLine(v.prev.get(), *v.cur, s.paused));
  if (!v.error.empty()) lines.push_back("last sample failed: " + v.error);
  if (s.mode == Mode::kProcesses && !v.cur->has_processes)
    lines.push_back("(the store has no per-process figures; use the local kernel or --agents)");
  Table t = BuildTable(s.mode, v.prev.get(), *v.cur);
  FilterAndSort(t, s.filter, s.sort_column, s.descending);
  lines.push_back("");
  for (std::string& l : FormatTable(t, width, s.sort_column, s.descending))
    lines.push_back(std::move(l));
  return lines;
}

// Batch: plain frames on stdout, one per sample.
absl::Status RunBatch(Board& board, const TopOptions& o) {
  TopState s;
  s.mode = o.mode;
  uint64_t seen = 0;
  int frames = 0;
  const absl::Time end = o.duration ? absl::Now() + *o.duration : absl::InfiniteFuture();
  while (!Signalled() && absl::Now() < end && (!o.frames || frames < *o.frames)) {
    board.Wait(seen, absl::Milliseconds(200));
    Board::View v = board.Get();
    if (v.generation == seen) continue;
    seen = v.generation;
    // The first frame has no rates yet; print it anyway, it says what is there.
    for (const std::string& line : Frame(v, s, o.width)) fmt::print("{}\n", line);
    fmt::print("\n");
    std::fflush(stdout);
    ++frames;
  }
  return absl::OkStatus();
}

// ncurses on, and off again whatever happens.
std::atomic<bool> g_curses_on{false};

void RestoreOnCrash(int sig) {
  if (g_curses_on.exchange(false)) endwin();
  signal(sig, SIG_DFL);
  raise(sig);
}

class Curses {
 public:
  Curses() {
    initscr();
    g_curses_on = true;
    for (int sig : {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL}) signal(sig, RestoreOnCrash);
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    curs_set(0);
    timeout(100);
    set_escdelay(25);
  }
  ~Curses() {
    if (g_curses_on.exchange(false)) endwin();
  }
  Curses(const Curses&) = delete;
  Curses& operator=(const Curses&) = delete;
};

absl::Status RunInteractive(Board& board, const TopOptions& o) {
  if (!isatty(STDOUT_FILENO) || !isatty(STDIN_FILENO))
    return absl::FailedPreconditionError("top: not a terminal; use --batch for pipes");
  Curses curses;
  TopState s;
  s.mode = o.mode;
  Board::View shown;
  bool dirty = true;
  while (!s.quit && !Signalled()) {
    int key = getch();  // waits up to 100 ms
    if (key != ERR) {
      Board::View v = board.Get();
      size_t columns = v.cur ? BuildTable(s.mode, nullptr, *v.cur).columns.size() : 8;
      if (key == KEY_RESIZE || HandleKey(s, key, columns)) dirty = true;
    }
    Board::View v = board.Get();
    if (!s.paused && v.generation != shown.generation) {
      shown = v;
      dirty = true;
    }
    if (!dirty) continue;
    // erase() + refresh(): curses sends only what changed, so no flicker.
    erase();
    const int rows = LINES, cols = COLS;
    std::vector<std::string> lines = Frame(shown, s, static_cast<size_t>(cols));
    for (int i = 0; i < rows - 1 && i < static_cast<int>(lines.size()); ++i) {
      if (i == 2 && lines.size() > 2) attron(A_BOLD);
      mvaddnstr(i, 0, lines[i].c_str(), cols);
      if (i == 2) attroff(A_BOLD);
    }
    attron(A_REVERSE);
    std::string footer = FooterHint(s);
    footer.resize(static_cast<size_t>(cols), ' ');
    mvaddnstr(rows - 1, 0, footer.c_str(), cols);
    attroff(A_REVERSE);
    refresh();
    dirty = false;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunTopUi(const SampleFn& sample, const TopOptions& options) {
  Board board;
  Sampler sampler(sample, options.interval, board);
  return options.batch ? RunBatch(board, options) : RunInteractive(board, options);
}

}  // namespace svcmap::ui
