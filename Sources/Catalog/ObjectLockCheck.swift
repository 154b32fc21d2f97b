import Foundation
import Support
import Storage

/// Whether a bucket enforces the Object Lock a policy requires for its barman-cloud archive:
/// the bucket's default retention (barman-cloud cannot lock objects itself, so the default is
/// what locks each WAL segment and base backup as it is written) and the newest WAL segment's
/// own lock, which shows it really happens. Pure.
public enum ObjectLockCheck {
    public struct Requirement: Sendable, Equatable {
        public var mode: String
        public var retentionSeconds: Int
        public init(mode: String, retentionSeconds: Int) {
            self.mode = mode
            self.retentionSeconds = retentionSeconds
        }
    }

    public struct Finding: Sendable, Equatable {
        /// What the bucket does, for `drctl status`.
        public var description: String
        /// Why it falls short of the requirement; nil when it meets it (or nothing is required).
        public var problem: String?
        public init(description: String, problem: String?) {
            self.description = description
            self.problem = problem
        }
    }

    /// `newestWAL`: the newest archived WAL segment as HEAD reports it, if there is one.
    public static func assess(_ bucket: BucketLock, required: Requirement?, newestWAL: StoredObject?) -> Finding {
        func days(_ s: Int) -> String { s % 86400 == 0 ? "\(s / 86400)d" : "\(s / 3600)h" }
        var description = bucket.description
        var problems: [String] = []
        if let w = newestWAL {
            if let until = w.lock?.retainUntil {
                description += "; newest WAL \((w.key as NSString).lastPathComponent) locked (\(w.lock?.mode ?? "?")) until \(formatUTC(until))"
            } else if bucket.enabled {
                description += "; newest WAL \((w.key as NSString).lastPathComponent) is not locked"
            }
        }
        guard let required else { return Finding(description: description, problem: nil) }
        let want = "\(required.mode) \(days(required.retentionSeconds))"
        if !bucket.enabled {
            problems.append("the bucket does not have Object Lock enabled (it can only be enabled when a bucket is created); the policy requires \(want)")
        } else if bucket.mode == nil {
            problems.append("the bucket has Object Lock but no default retention, so barman-cloud's objects are not locked; the policy requires \(want)")
        } else {
            if required.mode == "COMPLIANCE" && bucket.mode != "COMPLIANCE" {
                problems.append("default retention mode is \(bucket.mode!), which privileged users can bypass; the policy requires COMPLIANCE")
            }
            if let have = bucket.defaultRetentionSeconds, have < required.retentionSeconds {
                problems.append("default retention is \(days(have)), shorter than the \(days(required.retentionSeconds)) the policy requires")
            }
        }
        if bucket.enabled, let w = newestWAL {
            let lockedUntil = w.lock?.retainUntil
            let written = w.lastModified ?? .distantPast
            // A minute of slack: the store stamps LastModified and the retention date separately.
            if lockedUntil == nil || lockedUntil! < written.addingTimeInterval(TimeInterval(required.retentionSeconds - 60)) {
                problems.append("the newest WAL segment \(w.key) is \(lockedUntil.map { "locked only until \(formatUTC($0))" } ?? "not locked")")
            }
        }
        return Finding(description: description, problem: problems.isEmpty ? nil : problems.joined(separator: "; "))
    }

    static func formatUTC(_ d: Date) -> String { RFC3339.formatSeconds(d) }
}
