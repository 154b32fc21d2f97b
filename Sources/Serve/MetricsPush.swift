import Foundation
import HTTP
import Support

/// CronJob mode's metrics: drctl's exposition POSTed to a Prometheus Pushgateway under
/// job="drctl". POST replaces only the metric names pushed, so `catalog sync` (workloads and
/// stores) and `verify` (workloads) do not erase each other's.
public func pushMetrics(_ text: String, to gateway: String) throws {
    let url = gateway.hasSuffix("/") ? String(gateway.dropLast()) : gateway
    let transport = CurlTransport()
    let handler = CollectingHandler(limit: 1 << 20)
    let r = try transport.perform(HTTPRequest(method: "POST", url: url + "/metrics/job/drctl", headers: [("Content-Type", MetricsText.contentType)],
                                              body: .bytes(Array(text.utf8))), handler: handler)
    guard (200..<300).contains(r.status) else {
        throw LocalError("Pushgateway \(url): HTTP \(r.status): \(String(decoding: r.errorBody.prefix(300), as: UTF8.self))")
    }
}
