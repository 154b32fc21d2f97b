/// The order a site comes back in: a workload starts once everything it depends on is back.
/// Pure: names and edges only.
public enum SiteOrder {
    /// A cycle among `dependsOn` edges (its names, first repeated at the end), or nil.
    public static func cycle(_ edges: [(name: String, dependsOn: [String])]) -> [String]? {
        let deps = Dictionary(edges.map { ($0.name, $0.dependsOn) }, uniquingKeysWith: { a, _ in a })
        var state: [String: Int] = [:]   // 1 on the path, 2 done
        var path: [String] = []
        func visit(_ n: String) -> [String]? {
            if state[n] == 2 { return nil }
            if state[n] == 1, let i = path.firstIndex(of: n) { return Array(path[i...]) + [n] }
            state[n] = 1
            path.append(n)
            for m in deps[n] ?? [] where deps[m] != nil && m != n {
                if let c = visit(m) { return c }
            }
            path.removeLast()
            state[n] = 2
            return nil
        }
        for e in edges { if let c = visit(e.name) { return c } }
        return nil
    }

    /// Which of `pending` may start now: every dependency among `all` finished (one outside the
    /// rehearsal is not waited for). Databases first (a workload with CNPG clusters before one
    /// without), then by name, so the order is stable.
    public static func ready(pending: [(name: String, dependsOn: [String], hasDatabases: Bool)], finished: Set<String>, all: Set<String>) -> [String] {
        pending.filter { $0.dependsOn.allSatisfy { finished.contains($0) || !all.contains($0) } }
            .sorted { ($0.hasDatabases ? 0 : 1, $0.name) < ($1.hasDatabases ? 0 : 1, $1.name) }
            .map(\.name)
    }
}
