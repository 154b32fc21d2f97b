import CCurl
import Foundation
import Support

/// `HTTPTransport` over libcurl's easy interface. Handles are pooled so that connections
/// are kept alive across requests (listing thousands of pages must not reconnect each time).
public final class CurlTransport: HTTPTransport, @unchecked Sendable {
    private static let globalInit: Void = { curl_global_init(Int(CURL_GLOBAL_ALL)) ; () }()
    private let lock = NSLock()
    private var idle: [(handle: UnsafeMutableRawPointer, socket: HandleSocket)] = []
    let tls: TLSOptions
    let timeouts: TimeoutOptions
    public var userAgent = "drctl/0.1"

    public init(tls: TLSOptions = TLSOptions(), timeouts: TimeoutOptions = TimeoutOptions()) {
        _ = Self.globalInit
        self.tls = tls
        self.timeouts = timeouts
    }

    deinit { for (h, socket) in idle { curl_easy_cleanup(h); _ = socket } }

    private func acquire() -> (handle: UnsafeMutableRawPointer, socket: HandleSocket) {
        lock.lock(); defer { lock.unlock() }
        if let pooled = idle.popLast() { return pooled }
        guard let h = curl_easy_init() else { fatalError("curl_easy_init failed") }
        return (h, HandleSocket())
    }

    private func release(_ pooled: (handle: UnsafeMutableRawPointer, socket: HandleSocket), reusable: Bool) {
        // The socket's box outlives the handle: closing its connection calls back into it.
        if !reusable { curl_easy_cleanup(pooled.handle); withExtendedLifetime(pooled.socket) {}; return }
        curl_easy_reset(pooled.handle)
        lock.lock(); idle.append(pooled); lock.unlock()
    }

    public func perform(_ request: HTTPRequest, handler: HTTPResponseHandler) throws -> HTTPResponse {
        let pooled = acquire()
        let h = pooled.handle
        var ok = false
        defer { release(pooled, reusable: ok) }
        let ctx = try CurlCall(request: request, handler: handler)
        ctx.socket = pooled.socket
        defer { ctx.close() }
        let box = Unmanaged.passUnretained(ctx).toOpaque()

        var headerList: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(headerList) }
        var names = Set<String>()
        for (name, value) in request.headers {
            names.insert(name.lowercased())
            // "Name;" is curl's way of sending a header with an empty value.
            headerList = curl_slist_append(headerList, value.isEmpty ? "\(name);" : "\(name): \(value)")
        }
        // No 100-continue round trip; no implicit form content type on POST.
        headerList = curl_slist_append(headerList, "Expect:")
        if !names.contains("content-type") { headerList = curl_slist_append(headerList, "Content-Type:") }
        headerList = curl_slist_append(headerList, "Accept:")

        var errbuf = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        try errbuf.withUnsafeMutableBufferPointer { eb in
            drctl_setopt_str(h, CURLOPT_URL, request.url)
            drctl_setopt_long(h, CURLOPT_PATH_AS_IS, 1)      // object keys may contain "/./" and "//"
            drctl_setopt_long(h, CURLOPT_NOSIGNAL, 1)
            drctl_setopt_long(h, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1)
            drctl_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, Int(timeouts.connect * 1000))
            // A stall is "no byte moved for timeouts.stall seconds", timed by drctl: libcurl's own
            // low-speed limit averages its speed over about five seconds, so after a fast start it
            // noticed a silent server late, and under load later than the server's own reset.
            drctl_setopt_long(h, CURLOPT_NOPROGRESS, 0)
            drctl_setopt_xfer_cb(h, curlProgressCallback)
            drctl_setopt_ptr(h, CURLOPT_XFERINFODATA, box)
            drctl_setopt_long(h, CURLOPT_TCP_KEEPALIVE, 1)
            let socketBox = Unmanaged.passUnretained(pooled.socket).toOpaque()
            drctl_setopt_sockopt_cb(h, curlSockoptCallback)
            drctl_setopt_ptr(h, CURLOPT_SOCKOPTDATA, socketBox)
            drctl_setopt_closesocket_cb(h, curlCloseSocketCallback)
            drctl_setopt_ptr(h, CURLOPT_CLOSESOCKETDATA, socketBox)
            // Large buffers only where a large body may move (object data, a large upload): a
            // pooled handle keeps its buffers, and copies and listings run many handles at once.
            drctl_setopt_long(h, CURLOPT_BUFFERSIZE, request.largeResponse ? 512 * 1024 : 16 * 1024)
            drctl_setopt_long(h, CURLOPT_UPLOAD_BUFFERSIZE, Int(min(512 * 1024, max(16 * 1024, request.body.length))))
            drctl_setopt_str(h, CURLOPT_USERAGENT, userAgent)
            drctl_setopt_ptr(h, CURLOPT_ERRORBUFFER, eb.baseAddress)
            if let ca = tls.caBundle { drctl_setopt_str(h, CURLOPT_CAINFO, ca) }
            if let pem = tls.caPEM { pem.withUnsafeBytes { _ = drctl_setopt_blob(h, CURLOPT_CAINFO_BLOB, $0.baseAddress, $0.count) } }
            if let pem = tls.clientCertificatePEM {
                drctl_setopt_str(h, CURLOPT_SSLCERTTYPE, "PEM")
                pem.withUnsafeBytes { _ = drctl_setopt_blob(h, CURLOPT_SSLCERT_BLOB, $0.baseAddress, $0.count) }
            }
            if let pem = tls.clientKeyPEM {
                drctl_setopt_str(h, CURLOPT_SSLKEYTYPE, "PEM")
                pem.withUnsafeBytes { _ = drctl_setopt_blob(h, CURLOPT_SSLKEY_BLOB, $0.baseAddress, $0.count) }
            }
            if tls.insecure {
                drctl_setopt_long(h, CURLOPT_SSL_VERIFYPEER, 0)
                drctl_setopt_long(h, CURLOPT_SSL_VERIFYHOST, 0)
            }
            drctl_setopt_slist(h, CURLOPT_HTTPHEADER, headerList)
            drctl_setopt_data_cb(h, CURLOPT_HEADERFUNCTION, curlHeaderCallback)
            drctl_setopt_ptr(h, CURLOPT_HEADERDATA, box)
            drctl_setopt_data_cb(h, CURLOPT_WRITEFUNCTION, curlWriteCallback)
            drctl_setopt_ptr(h, CURLOPT_WRITEDATA, box)

            let length = request.body.length
            switch request.method {
            case "HEAD":
                drctl_setopt_long(h, CURLOPT_NOBODY, 1)
            case "GET":
                drctl_setopt_long(h, CURLOPT_HTTPGET, 1)
            case "PUT":
                drctl_setopt_long(h, CURLOPT_UPLOAD, 1)
                drctl_setopt_off(h, CURLOPT_INFILESIZE_LARGE, curl_off_t(length))
            case "POST":
                drctl_setopt_long(h, CURLOPT_POST, 1)
                drctl_setopt_off(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(length))
            default:
                drctl_setopt_str(h, CURLOPT_CUSTOMREQUEST, request.method)
                if length > 0 {
                    drctl_setopt_long(h, CURLOPT_UPLOAD, 1)
                    drctl_setopt_off(h, CURLOPT_INFILESIZE_LARGE, curl_off_t(length))
                }
            }
            if request.method == "PUT" || request.method == "POST" || length > 0 {
                drctl_setopt_data_cb(h, CURLOPT_READFUNCTION, curlReadCallback)
                drctl_setopt_ptr(h, CURLOPT_READDATA, box)
            }

            ctx.stallLimit = Double(timeouts.stall)
            let rc = curl_easy_perform(h)
            if let err = ctx.callbackError { throw err }
            if rc == CURLE_ABORTED_BY_CALLBACK && ctx.stalled {
                throw TransportError(code: Int(rc.rawValue), message: "\(request.method) \(Self.redactedURL(request.url)): stalled: no byte moved for \(timeouts.stall)s",
                                     retryable: true)
            }
            if rc != CURLE_OK {
                let detail = String(cString: eb.baseAddress!)
                let text = detail.isEmpty ? String(cString: curl_easy_strerror(rc)) : detail
                throw TransportError(code: Int(rc.rawValue), message: "\(request.method) \(Self.redactedURL(request.url)): \(text)",
                                     retryable: Self.retryable(rc))
            }
        }
        var status = 0
        drctl_getinfo_long(h, CURLINFO_RESPONSE_CODE, &status)
        ctx.status = status
        try ctx.deliverHeadIfNeeded()
        ok = true
        return ctx.response
    }

    static func retryable(_ rc: CURLcode) -> Bool {
        switch rc {
        case CURLE_COULDNT_CONNECT, CURLE_OPERATION_TIMEDOUT, CURLE_RECV_ERROR, CURLE_SEND_ERROR,
             CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE, CURLE_SSL_CONNECT_ERROR, CURLE_HTTP2, CURLE_HTTP2_STREAM,
             CURLE_COULDNT_RESOLVE_HOST:
            return true
        default:
            return false
        }
    }

    /// A presigned URL carries its signature in the query: never show the query in errors.
    static func redactedURL(_ url: String) -> String {
        guard let q = url.firstIndex(of: "?") else { return url }
        return String(url[..<q]) + (url.contains("X-Amz-Signature") ? "?<presigned>" : String(url[q...]))
    }
}

/// Per-request state shared with the C callbacks.
final class CurlCall {
    let request: HTTPRequest
    let handler: HTTPResponseHandler
    var status = 0
    var headerLines: [String: String] = [:]
    var headDelivered = false
    var errorBody: [UInt8] = []
    var callbackError: Error?
    // stall detection (curlProgressCallback)
    var stallLimit: Double = 30
    var bytesMoved: curl_off_t = -1
    var lastMoved = monotonicSeconds()
    var stalled = false
    // request body
    var bytesSent = 0
    var fd: Int32 = -1
    var fileOffset: Int64 = 0
    var remaining: Int64 = 0
    /// The handle's connection socket.
    var socket: HandleSocket?

    init(request: HTTPRequest, handler: HTTPResponseHandler) throws {
        self.request = request
        self.handler = handler
        if case .file(let path, let offset, let length) = request.body {
            fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                throw TransportError(code: -1, message: "cannot open \(path): \(String(cString: strerror(errno)))", retryable: false)
            }
            fileOffset = offset
            remaining = length
        }
    }

    func close() { if fd >= 0 { Glibc.close(fd); fd = -1 } }

    var response: HTTPResponse { HTTPResponse(status: status, headers: headerLines, errorBody: errorBody) }

    func deliverHeadIfNeeded() throws {
        guard !headDelivered else { return }
        headDelivered = true
        try handler.head(response)
    }

    func onHeaderLine(_ line: String) {
        if line.isEmpty, let fd = socket?.fd, fd >= 0 {
            // The head is in; the body may wait behind it. A server that writes its head and its
            // body apart, with Nagle's algorithm on (RGW's beast frontend), holds the body until
            // the head is acknowledged, and Linux delays that ACK up to 40 ms in a request-reply
            // exchange: ACK now. Every small GET on a kept-alive connection otherwise costs 40 ms.
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_QUICKACK, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        if line.hasPrefix("HTTP/") {
            // A new response (after 100 Continue or a redirect): start over.
            headerLines = [:]
            let parts = line.split(separator: " ")
            status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
        } else if let colon = line.firstIndex(of: ":") {
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
            headerLines[name] = value
        }
    }

    func onBody(_ chunk: UnsafeRawBufferPointer) -> Bool {
        do {
            if (200..<300).contains(status) {
                try deliverHeadIfNeeded()
                try handler.body(chunk)
            } else if errorBody.count < 256 * 1024 {
                errorBody.append(contentsOf: chunk.prefix(256 * 1024 - errorBody.count))
            }
            return true
        } catch {
            callbackError = error
            return false
        }
    }

    func fill(_ buffer: UnsafeMutableRawBufferPointer) -> Int {
        switch request.body {
        case .empty:
            return 0
        case .bytes(let bytes):
            let n = min(buffer.count, bytes.count - bytesSent)
            guard n > 0 else { return 0 }
            bytes.withUnsafeBytes { src in
                buffer.baseAddress!.copyMemory(from: src.baseAddress! + bytesSent, byteCount: n)
            }
            handler.sent(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            bytesSent += n
            return n
        case .file(let path, _, _):
            let want = Int(min(Int64(buffer.count), remaining))
            guard want > 0 else { return 0 }
            let n = pread(fd, buffer.baseAddress, want, off_t(fileOffset))
            if n <= 0 {
                callbackError = TransportError(code: -1, message: n == 0 ? "\(path) shrank while it was being sent"
                                               : "read \(path): \(String(cString: strerror(errno)))", retryable: false)
                return Int(CURL_READFUNC_ABORT)
            }
            handler.sent(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            fileOffset += Int64(n)
            remaining -= Int64(n)
            bytesSent += n
            return n
        }
    }
}

/// A pooled handle's connection socket, kept by libcurl's open and close callbacks.
final class HandleSocket: @unchecked Sendable {
    var fd: Int32 = -1
}

private let curlSockoptCallback: drctl_curl_sockopt_cb = { box, fd, _ in
    Unmanaged<HandleSocket>.fromOpaque(box!).takeUnretainedValue().fd = fd
    return Int32(CURL_SOCKOPT_OK)
}

private let curlCloseSocketCallback: drctl_curl_closesocket_cb = { box, fd in
    let socket = Unmanaged<HandleSocket>.fromOpaque(box!).takeUnretainedValue()
    if socket.fd == fd { socket.fd = -1 }
    return Glibc.close(fd)
}

private func curlHeaderCallback(_ ptr: UnsafeMutablePointer<CChar>?, _ size: Int, _ n: Int, _ ud: UnsafeMutableRawPointer?) -> Int {
    let call = Unmanaged<CurlCall>.fromOpaque(ud!).takeUnretainedValue()
    let count = size * n
    let line = String(decoding: UnsafeRawBufferPointer(start: ptr, count: count), as: UTF8.self)
    call.onHeaderLine(line.trimmingCharacters(in: .newlines))
    return count
}

private func curlWriteCallback(_ ptr: UnsafeMutablePointer<CChar>?, _ size: Int, _ n: Int, _ ud: UnsafeMutableRawPointer?) -> Int {
    let call = Unmanaged<CurlCall>.fromOpaque(ud!).takeUnretainedValue()
    let count = size * n
    return call.onBody(UnsafeRawBufferPointer(start: ptr, count: count)) ? count : 0
}

private func curlReadCallback(_ ptr: UnsafeMutablePointer<CChar>?, _ size: Int, _ n: Int, _ ud: UnsafeMutableRawPointer?) -> Int {
    let call = Unmanaged<CurlCall>.fromOpaque(ud!).takeUnretainedValue()
    return call.fill(UnsafeMutableRawBufferPointer(start: ptr, count: size * n))
}

/// Aborts a transfer once no byte has moved, either way, for the call's stall limit. libcurl calls
/// this about once a second even while nothing arrives.
let curlProgressCallback: drctl_curl_xfer_cb = { data, _, dlnow, _, ulnow in
    let ctx = Unmanaged<CurlCall>.fromOpaque(data!).takeUnretainedValue()
    let now = monotonicSeconds()
    if dlnow + ulnow != ctx.bytesMoved {
        ctx.bytesMoved = dlnow + ulnow
        ctx.lastMoved = now
        return 0
    }
    guard now - ctx.lastMoved >= ctx.stallLimit else { return 0 }
    ctx.stalled = true
    return 1
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
