import Foundation
import HTTP
import Support
import Logging

/// Capped exponential backoff with full jitter, for failures that another try can fix:
/// 5xx/SlowDown responses and transport failures (resets, timeouts, refused connections).
/// A 4xx is never retried.
public struct RetryPolicy: Sendable {
    public var maxAttempts: Int
    public var baseDelay: Double
    public var maxDelay: Double

    public init(maxAttempts: Int = 6, baseDelay: Double = 0.1, maxDelay: Double = 8) {
        self.maxAttempts = maxAttempts
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    public static let none = RetryPolicy(maxAttempts: 1)

    public static func isRetryable(_ error: Error) -> Bool {
        switch error {
        case let e as S3Error: return e.retryable
        case let e as TransportError: return e.retryable
        default: return false
        }
    }

    /// The delay before attempt `attempt + 1` (attempt counts from 1).
    public func delay(after attempt: Int) -> Double {
        let ceiling = min(maxDelay, baseDelay * pow(2, Double(attempt - 1)))
        return Double.random(in: 0...ceiling)
    }

    /// Runs `body` until it succeeds, fails with a non-retryable error, or runs out of attempts.
    public func run<T>(_ what: String, logger: Logger, _ body: (_ attempt: Int) throws -> T) throws -> T {
        var attempt = 1
        while true {
            do {
                return try body(attempt)
            } catch where Self.isRetryable(error) && attempt < maxAttempts {
                let wait = delay(after: attempt)
                logger.warning("\(what): \(error) — retrying in \(String(format: "%.2f", wait))s (attempt \(attempt + 1) of \(maxAttempts))")
                Thread.sleep(forTimeInterval: wait)
                attempt += 1
            }
        }
    }
}
