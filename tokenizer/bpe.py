"""The byte-pair merge loop (docs/qwen3.md §3, "Merge loop") in pure Python; csrc/bpe/bpe.cpp is its C++ twin.

A pre-token's UTF-8 bytes start as one token each. Then, as long as any adjacent pair is in the merge table,
the pair with the lowest rank is replaced by the token it makes; among equal ranks (the same pair twice) the
leftmost goes first. This is what the Rust ``tokenizers`` library does, and for a consistent merge table it
equals the slow tokenizer's "merge every occurrence of the best bigram" loop and tiktoken's "merge the pair
whose concatenation has the lowest rank".
"""
import heapq

SCAN_LIMIT = 48  # pieces longer than this use the heap loop (as in csrc/bpe/bpe.cpp)


class BPE:
    """A byte-level BPE model: 256 byte tokens plus merges ``(left id, right id) -> (rank, merged id)``."""

    def __init__(self, byte_ids, merges):
        """byte_ids[b]: the id of the one-byte token b; merges: list of (left, right, merged) ids in rank order."""
        if len(byte_ids) != 256:
            raise ValueError(f"byte_ids must have 256 entries, got {len(byte_ids)}")
        self.byte_ids = list(byte_ids)
        self.merges = [tuple(m) for m in merges]
        self.ranks = {(a, b): (rank, c) for rank, (a, b, c) in enumerate(self.merges)}

    def merge(self, piece: bytes) -> list:
        """Token ids of one pre-token (given as UTF-8 bytes)."""
        ids = [self.byte_ids[b] for b in piece]
        return self._merge_scan(ids) if len(ids) <= SCAN_LIMIT else self._merge_heap(ids)

    def _merge_scan(self, ids):
        """Short pieces (almost all): rescan for the best pair after every merge. O(n^2), tiny n."""
        ranks = self.ranks
        while len(ids) > 1:
            best, best_i = None, -1
            for i in range(len(ids) - 1):
                r = ranks.get((ids[i], ids[i + 1]))
                if r is not None and (best is None or r[0] < best[0]):
                    best, best_i = r, i
            if best is None:
                break
            ids[best_i:best_i + 2] = [best[1]]
        return ids

    def _merge_heap(self, ids):
        """Long pieces (runs of spaces or letters): a linked list of symbols and a min-heap of
        (rank, position), so a 100k-character run stays O(n log n). Ordering by (rank, position) picks the
        same pair as the scan. Heap entries whose pair has changed since they were pushed are skipped."""
        ranks, n = self.ranks, len(ids)
        nxt, prv = list(range(1, n)) + [-1], list(range(-1, n - 1))
        heap = [(ranks[(ids[i], ids[i + 1])][0], i) for i in range(n - 1) if (ids[i], ids[i + 1]) in ranks]
        heapq.heapify(heap)

        def push(i):
            if i >= 0 and nxt[i] >= 0 and (ids[i], ids[nxt[i]]) in ranks:
                heapq.heappush(heap, (ranks[(ids[i], ids[nxt[i]])][0], i))

        while heap:
            rank, i = heapq.heappop(heap)
            j = nxt[i]
            if ids[i] is None or j < 0:
                continue  # merged away, or now the last symbol
            r = ranks.get((ids[i], ids[j]))
            if r is None or r[0] != rank:
                continue  # the pair at i changed since this entry was pushed
            ids[i], ids[j] = r[1], None
            nxt[i] = nxt[j]
            if nxt[j] >= 0:
                prv[nxt[j]] = i
            push(prv[i])
            push(i)
        return [t for t in ids if t is not None]


def merges_from_ranks(token_bytes):
    """Recover a merge table from tiktoken-style ranks (token id == rank, ``token_bytes[id]`` its bytes).

    tiktoken merges whichever adjacent pair concatenates to the lowest-rank token. Replaying that loop on a
    token's own bytes, using only ranks below its own, stops at exactly two parts: the merge that made it.
    Returns the 256 byte ids and the merges (left, right, merged) sorted by the merged token's rank.
    """
    rank_of = {b: i for i, b in enumerate(token_bytes)}
    byte_ids = []
    for b in range(256):
        if bytes([b]) not in rank_of:
            raise ValueError(f"rank file has no token for the single byte {b}")
        byte_ids.append(rank_of[bytes([b])])
    merges = []
    for rank, token in enumerate(token_bytes):
        if len(token) < 2:
            continue
        parts = [token[i:i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best, best_i = None, -1
            for i in range(len(parts) - 1):
                r = rank_of.get(parts[i] + parts[i + 1])
                if r is not None and r < rank and (best is None or r < best):
                    best, best_i = r, i
            if best is None:
                break
            parts[best_i:best_i + 2] = [parts[best_i] + parts[best_i + 1]]
        if len(parts) != 2 or parts[0] not in rank_of or parts[1] not in rank_of:
            raise ValueError(f"token {rank} ({token!r}) cannot be built from two lower-rank tokens")
        merges.append((rank_of[parts[0]], rank_of[parts[1]], rank))
    return byte_ids, merges
