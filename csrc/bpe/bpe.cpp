// qwen3mini._bpe: the tokenizer's hot path in C++ (pre-tokenizer + merge loop + per-piece cache), and the
// trainer's pre-token counting. Every function gives exactly what its pure-Python twin in tokenizer/ gives:
//   Encoder.pretokenize  == tokenizer/pretokenize.py  pretokenize()   (the `regex` package on Qwen's pattern)
//   Encoder.merge        == tokenizer/bpe.py          BPE.merge()
//   Encoder.encode       == tokenizer/tokenizer.py    Tokenizer.encode_ordinary()
//   count_pretokens      == tokenizer/trainer.py      count_pretokens()
//   train_merges         == tokenizer/trainer.py      learn_merges()
// Profiling the pure-Python path shows the regex split costs about as much as everything else, so the split
// is done here too, by a hand-written matcher of Qwen's pattern (docs/qwen3.md §3):
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "unicode_tables.h"

namespace py = pybind11;

// ------------------------------------------------------------------------------------------- character classes
enum : uint8_t { kL = 1, kN = 2, kS = 4 };  // \p{L}, \p{N}, \s (from the generated unicode_tables.h)

static const std::vector<uint8_t>& char_classes() {
  static const std::vector<uint8_t> table = [] {
    std::vector<uint8_t> t(0x110000, 0);
    for (const auto& r : kLetterRanges) for (uint32_t c = r[0]; c <= r[1]; ++c) t[c] |= kL;
    for (const auto& r : kNumberRanges) for (uint32_t c = r[0]; c <= r[1]; ++c) t[c] |= kN;
    for (const auto& r : kSpaceRanges) for (uint32_t c = r[0]; c <= r[1]; ++c) t[c] |= kS;
    return t;
  }();
  return table;
}

// Decodes valid UTF-8 (Python guarantees it) into code points and the byte offset of each.
static void decode_utf8(std::string_view s, std::vector<uint32_t>& cps, std::vector<uint32_t>& offsets) {
  cps.clear();
  offsets.clear();
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0, n = s.size();
  while (i < n) {
    uint32_t c = p[i];
    size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (len == 2) c = ((c & 0x1F) << 6) | (p[i + 1] & 0x3F);
    else if (len == 3) c = ((c & 0x0F) << 12) | ((p[i + 1] & 0x3F) << 6) | (p[i + 2] & 0x3F);
    else if (len == 4) c = ((c & 0x07) << 18) | ((p[i + 1] & 0x3F) << 12) | ((p[i + 2] & 0x3F) << 6) | (p[i + 3] & 0x3F);
    cps.push_back(c);
    offsets.push_back(static_cast<uint32_t>(i));
    i += len;
  }
  offsets.push_back(static_cast<uint32_t>(n));
}

// ------------------------------------------------------------------------------------------------ pre-tokenizer
// The end (code-point index) of the pre-token starting at i: the regex's alternatives, tried in order.
static size_t match_pretoken(const std::vector<uint32_t>& cp, size_t i, const uint8_t* cls) {
  const size_t n = cp.size();
  auto L = [&](size_t k) { return (cls[cp[k]] & kL) != 0; };
  auto N = [&](size_t k) { return (cls[cp[k]] & kN) != 0; };
  auto S = [&](size_t k) { return (cls[cp[k]] & kS) != 0; };
  auto punct = [&](size_t k) { return (cls[cp[k]] & (kL | kN | kS)) == 0; };  // [^\s\p{L}\p{N}]
  auto newline = [&](size_t k) { return cp[k] == '\r' || cp[k] == '\n'; };
  auto fold = [&](size_t k) -> uint32_t {  // (?i) on the contraction letters; U+017F (long s) folds to 's'
    uint32_t c = cp[k];
    return (c >= 'A' && c <= 'Z') ? c + 32 : c == 0x17F ? 's' : c;
  };
  const uint32_t c = cp[i];
  // 1. (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (c == '\'' && i + 1 < n) {
    uint32_t a = fold(i + 1);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 < n) {
      uint32_t b = fold(i + 2);
      if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
  }
  // 2. [^\r\n\p{L}\p{N}]?\p{L}+
  size_t j = i;
  if (!L(i) && !N(i) && !newline(i) && i + 1 < n && L(i + 1)) j = i + 1;
  if (L(j)) {
    while (j < n && L(j)) ++j;
    return j;
  }
  // 3. \p{N}
  if (N(i)) return i + 1;
  // 4. ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  j = (c == ' ' && i + 1 < n) ? i + 1 : i;
  if (punct(j)) {
    while (j < n && punct(j)) ++j;
    while (j < n && newline(j)) ++j;
    return j;
  }
  // Only whitespace is left. Its run is [i, end).
  size_t end = i;
  while (end < n && S(end)) ++end;
  // 5. \s*[\r\n]+ : backtracking stops at the run's last newline.
  for (size_t k = end; k > i; --k)
    if (newline(k - 1)) return k;
  // 6. \s+(?!\S) : the whole run at the end of text, else all but its last character (which then leads the
  //    next word, " hello").  7. \s+ : a lone whitespace character before a non-space.
  if (end == n || end - i == 1) return end;
  return end - 1;
}

// Byte offsets [start, end) of every pre-token of `text`.
static void pretokenize_offsets(std::string_view text, std::vector<uint32_t>& cps, std::vector<uint32_t>& offsets,
                                std::vector<std::pair<uint32_t, uint32_t>>& pieces) {
  decode_utf8(text, cps, offsets);
  const uint8_t* cls = char_classes().data();
  pieces.clear();
  for (size_t i = 0; i < cps.size();) {
    size_t j = match_pretoken(cps, i, cls);
    pieces.emplace_back(offsets[i], offsets[j]);
    i = j;
  }
}

static std::string_view utf8_view(const py::str& s) {
  Py_ssize_t size;
  const char* data = PyUnicode_AsUTF8AndSize(s.ptr(), &size);  // cached by CPython; raises on lone surrogates
  if (data == nullptr) throw py::error_already_set();
  return std::string_view(data, static_cast<size_t>(size));
}

// ------------------------------------------------------------------------------------------------- merge loop
class Encoder {
 public:
  Encoder(std::vector<int> byte_ids, const std::vector<std::tuple<int, int, int>>& merges, size_t cache_limit)
      : byte_ids_(byte_ids), cache_limit_(std::max<size_t>(cache_limit, 1)) {
    if (byte_ids_.size() != 256) throw std::invalid_argument("byte_ids must have 256 entries");
    ranks_.reserve(merges.size() * 2);
    for (size_t r = 0; r < merges.size(); ++r) {
      auto [a, b, c] = merges[r];
      ranks_.emplace(key(a, b), Merge{static_cast<int>(r), c});
    }
  }

  // Token ids of one pre-token's bytes: merge the lowest-rank adjacent pair, leftmost first, until none is left.
  std::vector<int> merge(std::string_view piece) const {
    std::vector<int> ids(piece.size());
    for (size_t i = 0; i < piece.size(); ++i) ids[i] = byte_ids_[static_cast<unsigned char>(piece[i])];
    return ids.size() <= kScanLimit ? merge_scan(std::move(ids)) : merge_heap(ids);
  }

  std::vector<int> encode(std::string_view text) {
    std::vector<int> out;
    out.reserve(text.size() / 3);
    pretokenize_offsets(text, cps_, offsets_, pieces_);
    for (auto [s, e] : pieces_) {
      std::string_view piece = text.substr(s, e - s);
      if (piece.size() == 1) {  // digits, lone spaces, ASCII punctuation: no merge possible
        out.push_back(byte_ids_[static_cast<unsigned char>(piece[0])]);
      } else if (piece.size() > kCacheMaxBytes) {  // long runs are rare; caching them would only waste memory
        auto ids = merge(piece);
        out.insert(out.end(), ids.begin(), ids.end());
      } else {
        cached_merge(piece, out);
      }
    }
    return out;
  }

  std::vector<std::string_view> pretokenize(std::string_view text) {
    pretokenize_offsets(text, cps_, offsets_, pieces_);
    std::vector<std::string_view> out;
    out.reserve(pieces_.size());
    for (auto [s, e] : pieces_) out.push_back(text.substr(s, e - s));
    return out;
  }

 private:
  struct Merge { int rank, id; };
  static constexpr size_t kScanLimit = 48;        // pieces longer than this use the O(n log n) heap loop
  static constexpr size_t kCacheMaxBytes = 256;

  // The per-pre-token cache: open addressing over flat slots, keys and ids in two arenas. A node-based
  // std::unordered_map spent most of encode() chasing pointers; this needs about one cache line per hit.
  struct Slot { uint64_t hash; uint32_t key_off, key_len, ids_off, ids_len; };  // key_len == 0: empty

  static uint64_t hash_bytes(std::string_view s) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ s.size(), v;
    size_t i = 0;
    for (; i + 8 <= s.size(); i += 8) {
      std::memcpy(&v, s.data() + i, 8);
      h = (h ^ v) * 0xFF51AFD7ED558CCDull;
      h ^= h >> 32;
    }
    v = 0;
    std::memcpy(&v, s.data() + i, s.size() - i);
    h = (h ^ v) * 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 29);
  }

  void reset_cache(size_t capacity) {
    slots_.assign(capacity, Slot{0, 0, 0, 0, 0});
    key_arena_.clear();
    ids_arena_.clear();
    cached_ = 0;
  }

  void insert_slot(const Slot& slot) {
    const size_t mask = slots_.size() - 1;
    size_t i = slot.hash & mask;
    while (slots_[i].key_len != 0) i = (i + 1) & mask;
    slots_[i] = slot;
  }

  // Appends the ids of `piece` to `out`, merging it only the first time it is seen.
  void cached_merge(std::string_view piece, std::vector<int>& out) {
    if (slots_.empty()) reset_cache(1 << 16);
    const uint64_t h = hash_bytes(piece);
    const size_t mask = slots_.size() - 1;
    for (size_t i = h & mask; slots_[i].key_len != 0; i = (i + 1) & mask) {
      const Slot& slot = slots_[i];
      if (slot.hash == h && slot.key_len == piece.size() &&
          std::memcmp(key_arena_.data() + slot.key_off, piece.data(), piece.size()) == 0) {
        const int* ids = ids_arena_.data() + slot.ids_off;
        out.insert(out.end(), ids, ids + slot.ids_len);
        return;
      }
    }
    if (cached_ >= cache_limit_) reset_cache(slots_.size());  // bounded memory: start over
    if (2 * (cached_ + 1) > slots_.size()) {                  // keep the load factor below 1/2
      std::vector<Slot> old;
      old.swap(slots_);
      slots_.assign(old.size() * 2, Slot{0, 0, 0, 0, 0});
      for (const Slot& slot : old)
        if (slot.key_len != 0) insert_slot(slot);
    }
    std::vector<int> ids = merge(piece);
    insert_slot(Slot{h, static_cast<uint32_t>(key_arena_.size()), static_cast<uint32_t>(piece.size()),
                     static_cast<uint32_t>(ids_arena_.size()), static_cast<uint32_t>(ids.size())});
    key_arena_.append(piece);
    ids_arena_.insert(ids_arena_.end(), ids.begin(), ids.end());
    ++cached_;
    out.insert(out.end(), ids.begin(), ids.end());
  }

  static uint64_t key(int a, int b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }

  const Merge* find(int a, int b) const {
    auto it = ranks_.find(key(a, b));
    return it == ranks_.end() ? nullptr : &it->second;
  }

  // Short pieces (almost all of them): rescan for the best pair after each merge, as the Python loop does.
  std::vector<int> merge_scan(std::vector<int> ids) const {
    while (ids.size() > 1) {
      const Merge* best = nullptr;
      size_t best_i = 0;
      for (size_t i = 0; i + 1 < ids.size(); ++i) {
        const Merge* m = find(ids[i], ids[i + 1]);
        if (m && (!best || m->rank < best->rank)) best = m, best_i = i;
      }
      if (!best) break;
      ids[best_i] = best->id;
      ids.erase(ids.begin() + best_i + 1);
    }
    return ids;
  }

  // Long pieces: a linked list of symbols and a min-heap of (rank, position); stale entries are skipped.
  // Ordering by (rank, position) picks the same pair as the scan, so both give identical ids.
  std::vector<int> merge_heap(std::vector<int> ids) const {
    const int n = static_cast<int>(ids.size());
    std::vector<int> prev(n), next(n);
    for (int i = 0; i < n; ++i) prev[i] = i - 1, next[i] = i + 1 < n ? i + 1 : -1;
    using Entry = std::pair<int, int>;  // (rank, position of the left symbol)
    std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
    auto push = [&](int i) {
      if (i < 0 || next[i] < 0) return;
      if (const Merge* m = find(ids[i], ids[next[i]])) heap.emplace(m->rank, i);
    };
    for (int i = 0; i + 1 < n; ++i) push(i);
    while (!heap.empty()) {
      auto [rank, i] = heap.top();
      heap.pop();
      if (ids[i] < 0 || next[i] < 0) continue;                 // symbol merged away, or now last
      const Merge* m = find(ids[i], ids[next[i]]);
      if (!m || m->rank != rank) continue;                     // the pair at i changed since this was pushed
      int j = next[i];
      ids[i] = m->id;
      ids[j] = -1;
      next[i] = next[j];
      if (next[j] >= 0) prev[next[j]] = i;
      push(prev[i]);
      push(i);
    }
    std::vector<int> out;
    for (int i = 0; i >= 0; i = next[i]) out.push_back(ids[i]);
    return out;
  }

  std::vector<int> byte_ids_;
  size_t cache_limit_;  // pre-tokens remembered before the cache starts over
  std::unordered_map<uint64_t, Merge> ranks_;
  std::vector<Slot> slots_;
  std::string key_arena_;
  std::vector<int> ids_arena_;
  size_t cached_ = 0;
  std::vector<uint32_t> cps_, offsets_;                       // scratch buffers reused across calls
  std::vector<std::pair<uint32_t, uint32_t>> pieces_;
};

// -------------------------------------------------------------------------------------------------- trainer
// Counts of every distinct pre-token (as bytes) of `text`, added into `counts` (a dict bytes -> int).
static void count_pretokens(const py::str& text, py::dict counts) {
  std::string_view s = utf8_view(text);
  std::vector<uint32_t> cps, offsets;
  std::vector<std::pair<uint32_t, uint32_t>> pieces;
  pretokenize_offsets(s, cps, offsets, pieces);
  std::unordered_map<std::string_view, long long> local;
  for (auto [b, e] : pieces) ++local[s.substr(b, e - b)];
  for (auto& [piece, n] : local) {
    py::bytes key(piece.data(), piece.size());
    PyObject* old = PyDict_GetItem(counts.ptr(), key.ptr());  // borrowed
    long long total = n + (old ? PyLong_AsLongLong(old) : 0);
    counts[key] = py::int_(total);
  }
}

// The merge loop of tokenizer/trainer.py learn_merges(), same rule: merge the most frequent pair (ties: the
// smaller pair), re-count only the words that contain it. `where` may list a word twice or after it lost the
// pair; `seen` and a containment check skip those.
static std::vector<std::pair<int, int>> train_merges(const std::vector<std::string>& pieces,
                                                     const std::vector<long long>& counts, int num_merges,
                                                     long long min_frequency, py::object progress) {
  if (pieces.size() != counts.size()) throw std::invalid_argument("pieces and counts differ in length");
  auto key = [](int a, int b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); };
  std::vector<std::vector<int>> words(pieces.size());
  std::unordered_map<uint64_t, long long> pair_counts;
  std::unordered_map<uint64_t, std::vector<int>> where;
  for (size_t w = 0; w < pieces.size(); ++w) {
    for (unsigned char ch : pieces[w]) words[w].push_back(ch);
    for (size_t i = 0; i + 1 < words[w].size(); ++i) {
      uint64_t k = key(words[w][i], words[w][i + 1]);
      pair_counts[k] += counts[w];
      where[k].push_back(static_cast<int>(w));
    }
  }
  using Entry = std::pair<long long, uint64_t>;  // (count, pair); best = highest count, then smallest pair
  auto worse = [](const Entry& x, const Entry& y) { return x.first != y.first ? x.first < y.first : x.second > y.second; };
  std::priority_queue<Entry, std::vector<Entry>, decltype(worse)> heap(worse);
  for (auto& [k, c] : pair_counts) heap.emplace(c, k);
  std::vector<int> seen(words.size(), -1);
  std::vector<std::pair<int, int>> merges;
  std::vector<int> merged;
  std::vector<uint64_t> gained;
  while (static_cast<int>(merges.size()) < num_merges && !heap.empty()) {
    auto [count, k] = heap.top();
    heap.pop();
    auto it = pair_counts.find(k);
    long long current = it == pair_counts.end() ? 0 : it->second;
    if (current != count) {  // stale entry
      if (current > 0) heap.emplace(current, k);
      continue;
    }
    if (current < min_frequency) break;
    const int a = static_cast<int>(k >> 32), b = static_cast<int>(k & 0xFFFFFFFFu);
    const int fresh = 256 + static_cast<int>(merges.size());
    merges.emplace_back(a, b);
    gained.clear();
    std::vector<int> members = std::move(where[k]);
    where.erase(k);
    for (int w : members) {
      if (seen[w] == fresh) continue;
      seen[w] = fresh;
      std::vector<int>& word = words[w];
      bool found = false;
      for (size_t i = 0; i + 1 < word.size() && !found; ++i) found = word[i] == a && word[i + 1] == b;
      if (!found) continue;
      merged.clear();
      for (size_t i = 0; i < word.size();) {
        if (i + 1 < word.size() && word[i] == a && word[i + 1] == b) merged.push_back(fresh), i += 2;
        else merged.push_back(word[i]), i += 1;
      }
      const long long n = counts[w];
      for (size_t i = 0; i + 1 < word.size(); ++i) pair_counts[key(word[i], word[i + 1])] -= n;
      for (size_t i = 0; i + 1 < merged.size(); ++i) {
        uint64_t p = key(merged[i], merged[i + 1]);
        pair_counts[p] += n;
        if (merged[i] == fresh || merged[i + 1] == fresh) {  // only pairs with the new token are new here
          where[p].push_back(w);
          gained.push_back(p);
        }
      }
      word.swap(merged);
    }
    pair_counts.erase(k);
    std::sort(gained.begin(), gained.end());
    gained.erase(std::unique(gained.begin(), gained.end()), gained.end());
    for (uint64_t p : gained) {
      long long c = pair_counts[p];
      if (c > 0) heap.emplace(c, p);
    }
    if (!progress.is_none() && (merges.size() % 256 == 0)) progress(merges.size());
  }
  if (!progress.is_none()) progress(num_merges);
  return merges;
}

static py::list to_list(const std::vector<int>& ids) {
  py::list out(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) PyList_SET_ITEM(out.ptr(), i, PyLong_FromLong(ids[i]));
  return out;
}

PYBIND11_MODULE(_bpe, m) {
  m.doc() = "Byte-level BPE hot path of qwen3mini.tokenizer (see csrc/bpe/bpe.cpp)";
  py::class_<Encoder>(m, "Encoder")
      .def(py::init<std::vector<int>, const std::vector<std::tuple<int, int, int>>&, size_t>(), py::arg("byte_ids"),
           py::arg("merges"), py::arg("cache_limit") = 1 << 20)
      .def("encode", [](Encoder& e, const py::str& text) { return to_list(e.encode(utf8_view(text))); },
           "ids of already-normalised text (no added-token matching)")
      .def("merge", [](const Encoder& e, const py::bytes& piece) {
             return to_list(e.merge(std::string_view(piece)));
           }, "ids of one pre-token's bytes")
      .def("pretokenize", [](Encoder& e, const py::str& text) {
             py::list out;
             for (auto piece : e.pretokenize(utf8_view(text)))
               out.append(py::reinterpret_steal<py::str>(PyUnicode_DecodeUTF8(piece.data(), piece.size(), "strict")));
             return out;
           }, "the pre-tokens of text, as the Python regex splits it");
  m.def("count_pretokens", &count_pretokens, py::arg("text"), py::arg("counts"),
        "add the count of each distinct pre-token (bytes) of text into the dict counts");
  m.def("train_merges", &train_merges, py::arg("pieces"), py::arg("counts"), py::arg("num_merges"),
        py::arg("min_frequency"), py::arg("progress") = py::none(),
        "BPE merges [(left, right)] learned from distinct pre-tokens (bytes) and their counts");
}
