/// The transfer buffers a stream holds until its periods come due: for each, the head to complete,
/// its status (`virtio_snd_pcm_status`) in guest memory, and its PCM bytes as pieces of guest memory
/// (kept in a ring of preallocated pieces, so taking a buffer allocates nothing).
final class HeldBuffers {
    struct Entry {
        var head: UInt16
        var status: UnsafeMutableRawPointer
        var firstPiece: Int
        var pieceCount: Int
        var bytes: Int
        var done = 0
    }

    private let entries: UnsafeMutableBufferPointer<Entry>
    private var entryStart = 0
    private(set) var count = 0
    private let pieces: UnsafeMutableBufferPointer<UnsafeMutableRawBufferPointer>
    private var pieceStart = 0
    private var pieceCount = 0
    /// PCM bytes held and not yet transferred.
    private(set) var pendingBytes = 0

    init(entries entryCapacity: Int, pieces pieceCapacity: Int) {
        entries = .allocate(capacity: entryCapacity)
        pieces = .allocate(capacity: pieceCapacity)
    }

    deinit {
        entries.deallocate()
        pieces.deallocate()
    }

    /// Holds a buffer whose PCM bytes are `buffers` without the first `skip` and the last `trim`
    /// bytes. Returns false (holding nothing) when the ring is full.
    func hold(head: UInt16, status: UnsafeMutableRawPointer, buffers: UnsafeBufferPointer<UnsafeMutableRawBufferPointer>,
              skip: Int, trim: Int) -> Bool {
        guard count < entries.count else { return false }
        let total = buffers.reduce(0) { $0 + $1.count }
        let end = total - trim
        var offset = 0
        var added = 0
        for buffer in buffers {
            let lower = max(offset, skip), upper = min(offset + buffer.count, end)
            offset += buffer.count
            guard lower < upper else { continue }
            guard pieceCount + added < pieces.count else { return false }
            pieces[(pieceStart + pieceCount + added) % pieces.count] =
                UnsafeMutableRawBufferPointer(start: buffer.baseAddress! + (lower - (offset - buffer.count)), count: upper - lower)
            added += 1
        }
        let bytes = max(0, end - skip)
        entries[(entryStart + count) % entries.count] = Entry(head: head, status: status, firstPiece: (pieceStart + pieceCount) % pieces.count,
                                                               pieceCount: added, bytes: bytes)
        count += 1
        pieceCount += added
        pendingBytes += bytes
        return true
    }

    /// Moves up to `limit` bytes between the held buffers (oldest first) and `period`: out of them
    /// (`reading`, playback) or into them (capture). `completed` gets every buffer now fully
    /// transferred, in order. Returns the bytes moved.
    func transfer(_ period: UnsafeMutableRawBufferPointer, reading: Bool, completed: (Entry) -> Void) -> Int {
        var moved = 0
        while count > 0 && moved < period.count {
            var entry = entries[entryStart]
            // Walk the entry's pieces to its `done` offset, then copy.
            var skip = entry.done
            for k in 0..<entry.pieceCount where moved < period.count {
                let piece = pieces[(entry.firstPiece + k) % pieces.count]
                if skip >= piece.count { skip -= piece.count; continue }
                let n = min(piece.count - skip, period.count - moved)
                if reading {
                    (period.baseAddress! + moved).copyMemory(from: piece.baseAddress! + skip, byteCount: n)
                } else {
                    (piece.baseAddress! + skip).copyMemory(from: period.baseAddress! + moved, byteCount: n)
                }
                skip = 0
                moved += n
                entry.done += n
                pendingBytes -= n
            }
            entries[entryStart] = entry
            guard entry.done >= entry.bytes else { break }
            completed(popFront())
        }
        return moved
    }

    /// Takes the oldest buffer out (whatever it holds).
    func popFront() -> Entry {
        let entry = entries[entryStart]
        entryStart = (entryStart + 1) % entries.count
        count -= 1
        pieceStart = (pieceStart + entry.pieceCount) % pieces.count
        pieceCount -= entry.pieceCount
        pendingBytes -= entry.bytes - entry.done
        return entry
    }
}
