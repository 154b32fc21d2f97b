import Foundation
import HTTP
import Support

/// Alertmanager's v2 API and /metrics over HTTP.
public struct AlertmanagerClient: AlertmanagerAPI {
    public let base: String
    let transport: any HTTPTransport

    public init(base: String, transport: any HTTPTransport = CurlTransport(timeouts: TimeoutOptions(connect: 5, stall: 10))) {
        self.base = base.hasSuffix("/") ? String(base.dropLast()) : base
        self.transport = transport
    }

    public func readBack(_ url: String) throws -> String {
        let handler = CollectingHandler(limit: 16 << 20)
        let r: HTTPResponse
        do {
            r = try transport.perform(HTTPRequest(method: "GET", url: url, headers: [("Accept", "*/*")]), handler: handler)
        } catch let e as TransportError {
            throw LocalError(e.message)
        }
        guard (200..<300).contains(r.status) else { throw LocalError("GET \(url): HTTP \(r.status)") }
        return String(decoding: handler.data, as: UTF8.self)
    }

    func send(_ method: String, _ path: String, body: [UInt8]? = nil) throws -> [UInt8] {
        let handler = CollectingHandler(limit: 16 << 20)
        var headers: [(name: String, value: String)] = [("Accept", "application/json")]
        if body != nil { headers.append(("Content-Type", "application/json")) }
        let r: HTTPResponse
        do {
            r = try transport.perform(HTTPRequest(method: method, url: base + path, headers: headers, body: body.map { .bytes($0) } ?? .empty), handler: handler)
        } catch let e as TransportError {
            throw LocalError(e.message)   // it names the request
        }
        guard (200..<300).contains(r.status) else {
            throw LocalError("\(method) \(base)\(path): HTTP \(r.status) \(String(decoding: r.errorBody.prefix(200), as: UTF8.self))")
        }
        return handler.data
    }

    public func post(_ alerts: [PostedAlert]) throws {
        let body = alerts.map { a -> [String: Any] in
            ["labels": a.labels, "annotations": a.annotations, "startsAt": RFC3339.format(a.startsAt), "endsAt": RFC3339.format(a.endsAt)]
        }
        _ = try send("POST", "/api/v2/alerts", body: Array(try JSONSerialization.data(withJSONObject: body)))
    }

    public func receivers(ofAlertLabelled label: String, _ value: String) throws -> [String]? {
        let filter = URIEncoding.encode("\(label)=\"\(value)\"")
        let data = try send("GET", "/api/v2/alerts?filter=\(filter)")
        guard let list = try JSONSerialization.jsonObject(with: Data(data)) as? [[String: Any]] else {
            throw LocalError("GET \(base)/api/v2/alerts: not a list of alerts")
        }
        guard let alert = list.first else { return nil }
        return (alert["receivers"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
    }

    public func metrics() throws -> String { String(decoding: try send("GET", "/metrics"), as: UTF8.self) }
}
