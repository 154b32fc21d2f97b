import Foundation
import Support

/// One HTTP request as the S3 layer builds it. `url` is final: already encoded, never
/// normalised by the transport.
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(name: String, value: String)]
    public var body: HTTPBody
    /// The response body may be large (object data): the transport reads it in large buffers.
    /// Everything else (listings, metadata, API answers) in small ones.
    public var largeResponse = false

    public init(method: String, url: String, headers: [(name: String, value: String)], body: HTTPBody = .empty) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

public enum HTTPBody: Sendable {
    case empty
    case bytes([UInt8])
    /// A slice of a file, streamed: never read into memory as a whole.
    case file(path: String, offset: Int64, length: Int64)

    public var length: Int64 {
        switch self {
        case .empty: return 0
        case .bytes(let b): return Int64(b.count)
        case .file(_, _, let length): return length
        }
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    /// Header names lower-cased.
    public var headers: [String: String]
    /// The body of a non-2xx response (capped), for error decoding. 2xx bodies go to the handler.
    public var errorBody: [UInt8]

    public func header(_ name: String) -> String? { headers[name.lowercased()] }
}

/// Receives a response as it streams. `head` comes once, before any body bytes; `body` is
/// only called for 2xx responses; `sent` sees every request body byte as it goes out.
public protocol HTTPResponseHandler: AnyObject {
    func head(_ response: HTTPResponse) throws
    func body(_ chunk: UnsafeRawBufferPointer) throws
    func sent(_ chunk: UnsafeRawBufferPointer)
}

extension HTTPResponseHandler {
    public func head(_ response: HTTPResponse) throws {}
    public func sent(_ chunk: UnsafeRawBufferPointer) {}
}

/// Collects a (small) 2xx body in memory: XML responses, never object data.
public final class CollectingHandler: HTTPResponseHandler {
    public private(set) var data: [UInt8] = []
    let limit: Int
    public init(limit: Int = 64 << 20) { self.limit = limit }
    public func body(_ chunk: UnsafeRawBufferPointer) throws {
        guard data.count + chunk.count <= limit else {
            throw TransportError(code: -1, message: "response body larger than \(limit) bytes", retryable: false)
        }
        data.append(contentsOf: chunk)
    }
}

/// A failure below HTTP: connection refused, reset, timeout, TLS. `retryable` says whether
/// trying again can help.
public struct TransportError: Error, CustomStringConvertible, Sendable {
    public var code: Int
    public var message: String
    public var retryable: Bool
    public var description: String { "transport error: \(message)" }
    public init(code: Int, message: String, retryable: Bool) { self.code = code; self.message = message; self.retryable = retryable }
}

/// The HTTP seam: the S3 and Kubernetes clients talk to the network only through this.
public protocol HTTPTransport: Sendable {
    func perform(_ request: HTTPRequest, handler: HTTPResponseHandler) throws -> HTTPResponse
}

public struct TLSOptions: Sendable {
    public var caBundle: String?
    public var insecure: Bool
    /// PEM held in memory (e.g. a kubeconfig's *-data fields): CA certificates, and a client
    /// certificate with its key for mutual TLS.
    public var caPEM: [UInt8]?
    public var clientCertificatePEM: [UInt8]?
    public var clientKeyPEM: [UInt8]?
    public init(caBundle: String? = nil, insecure: Bool = false) {
        self.caBundle = caBundle
        self.insecure = insecure
    }
}

public struct TimeoutOptions: Sendable {
    public var connect: Double = 10
    /// A transfer that moves no byte for this long is treated as stalled and aborted.
    public var stall: Int = 30
    public init(connect: Double = 10, stall: Int = 30) {
        self.connect = connect
        self.stall = stall
    }
}
