// Types of `require('bulwark/express')`. Hand-written. They use node:http types only, so they
// need no @types/express; the middleware is assignable to Express's RequestHandler.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { RateLimiter, RateLimitDecision, DistributedTracer, Span, Observability } from './index'

/** The request as the middleware sees it: Express adds `ip`. */
export type RateLimitRequest = IncomingMessage & { ip?: string }

/** Express's `next`. */
export type NextFunction = (error?: unknown) => void

/** The middleware `rateLimit` returns. */
export type RateLimitMiddleware<Req extends IncomingMessage = RateLimitRequest, Res extends ServerResponse = ServerResponse> = (
  req: Req,
  res: Res,
  next: NextFunction,
) => void

/**
 * Which rate-limit response headers to send:
 * - `'draft-8'`: `RateLimit-Policy: "<policyName>";q=<quota>;w=<window s>` and
 *   `RateLimit: "<policyName>";r=<remaining>;t=<reset s>` (draft-ietf-httpapi-ratelimit-headers-08);
 * - `'draft-6'`: `RateLimit-Policy: <quota>;w=<window s>`, `RateLimit-Limit`, `RateLimit-Remaining`,
 *   `RateLimit-Reset` (seconds);
 * - `'legacy'`: `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (Unix seconds);
 * - `false`: none (a refusal still carries `Retry-After`).
 */
export type RateLimitHeaders = 'draft-8' | 'draft-6' | 'legacy' | false

/**
 * Options of `rateLimit`. Give either `limiter`, or `capacity` and `refillPerSecond`. Unknown
 * options are refused with a TypeError (`code: 'ERR_BULWARK_INVALID_OPTION'`).
 */
export interface RateLimitOptions<Req extends IncomingMessage = RateLimitRequest, Res extends ServerResponse = ServerResponse> {
  /**
   * The limiter to draw from; share one between middlewares to share the budget. Not together
   * with `capacity`/`refillPerSecond`.
   */
  limiter?: RateLimiter
  /** Tokens a client's bucket holds when full (finite, > 0); makes a limiter with `refillPerSecond`. */
  capacity?: number
  /** Tokens added to a client's bucket per second (finite, > 0); makes a limiter with `capacity`. */
  refillPerSecond?: number
  /**
   * The client of a request, as a string. Called synchronously; a throw goes to `next(err)`.
   * @default the client address: `req.ip`, else `req.socket.remoteAddress`, else `'unknown'`,
   * passed through {@link clientKey} (IPv6 grouped by /56)
   */
  key?: (req: Req) => string
  /** Tokens the request takes (finite, >= 0). Called synchronously; a throw goes to `next(err)`. @default 1 */
  cost?: (req: Req) => number
  /** Return true to let the request through untouched (no tokens, no headers). Synchronous. */
  skip?: (req: Req) => boolean
  /**
   * Make the request wait in the limiter's fair queue (`limiter.acquire`) instead of refusing
   * it at once; it is refused with 429 only when the queue turns it down. A client that
   * disconnects leaves the queue.
   * @default false
   */
  wait?: boolean
  /** Which rate-limit headers to send on every limited response. @default 'draft-8' */
  headers?: RateLimitHeaders
  /** The policy name of the draft-8 headers: 1 to 256 printable ASCII characters. @default 'default' */
  policyName?: string
  /**
   * Answers a refused request instead of the default 429 JSON response. The rate-limit headers
   * and `Retry-After` are already set when it is called. A throw or a rejected promise goes to
   * `next(err)`.
   */
  onLimited?: (req: Req, res: Res, next: NextFunction, decision: RateLimitDecision) => unknown
}

/**
 * Express middleware that rate-limits requests with a token bucket per client. Admitted
 * requests carry the rate-limit headers; refused ones get status 429, `Retry-After` (whole
 * seconds, at least 1) and the body `{"error":"rate_limited","retryAfterMs":n}`.
 *
 * @throws {TypeError | RangeError} with `code: 'ERR_BULWARK_INVALID_OPTION'` on a bad option.
 */
export declare function rateLimit<Req extends IncomingMessage = RateLimitRequest, Res extends ServerResponse = ServerResponse>(
  options: RateLimitOptions<Req, Res>,
): RateLimitMiddleware<Req, Res>

/**
 * The rate-limit key of a client address: IPv4 as given; IPv4-mapped IPv6 (`::ffff:1.2.3.4`) as
 * its IPv4 address; other IPv6 as its /56 prefix (`2001:db8:85a3:ab12::1` ->
 * `2001:db8:85a3:ab00::/56`), zone id dropped; anything else as given.
 */
export declare function clientKey(address: string): string

/** The request as `tracing` sees it: Express adds `ip`, `protocol`, `originalUrl`, `baseUrl` and `route`. */
export type TracingRequest = IncomingMessage & {
  ip?: string
  protocol?: string
  originalUrl?: string
  baseUrl?: string
  route?: { path?: unknown }
  /** The request's server span, set by `tracing`. */
  span?: Span
}

/** Options of `tracing`. Unknown options are refused with a TypeError (`code: 'ERR_BULWARK_INVALID_OPTION'`). */
export interface TracingOptions<Req extends IncomingMessage = TracingRequest> {
  /** The tracer the server spans are started on. */
  tracer: DistributedTracer
  /** Return true to serve the request without a span. Synchronous; a throw goes to `next(err)`. */
  ignore?: (req: Req) => boolean
  /**
   * The span's name, instead of `METHOD route`. Called when the request comes in (so sampling
   * rules see it); the span is not renamed later. Synchronous; a throw goes to `next(err)`.
   */
  spanName?: (req: Req) => string
}

/** The middleware `tracing` returns. */
export type TracingMiddleware<Req extends IncomingMessage = TracingRequest, Res extends ServerResponse = ServerResponse> = (
  req: Req,
  res: Res,
  next: NextFunction,
) => void

/**
 * Express middleware that runs each request in one `server` span (set as `req.span`), parented
 * on the incoming `traceparent` and active for the whole handler chain. The span is named
 * `METHOD route` (the matched route template, `req.baseUrl` included) when the response
 * finishes, or `METHOD` when no route matched; it carries the OpenTelemetry HTTP server
 * attributes, has status error on 5xx, and ends when the response finishes (or with status
 * error 'aborted' when the client went away first). No listener is added to the response: the
 * middleware hears of finished responses on Node's `http.server.response.finish` diagnostics
 * channel and of aborted ones from one 'close' listener per connection.
 *
 * @throws {TypeError} with `code: 'ERR_BULWARK_INVALID_OPTION'` on a bad option.
 */
export declare function tracing<Req extends IncomingMessage = TracingRequest, Res extends ServerResponse = ServerResponse>(
  options: TracingOptions<Req>,
): TracingMiddleware<Req, Res>

/** Options of `observability(options)`. */
export interface ObservabilityMiddlewareOptions {
  /** The Observability whose blocks are served. */
  obs: Observability
  /** Paths to serve instead of the defaults (each must start with `/`). */
  paths?: {
    /** @default '/api/v1/system/observability' */
    snapshot?: string
    /** The same snapshot, under the name budget-server's clients call. @default '/api/v1/providers/resilience-status' */
    resilience?: string
    /** Prometheus text, or OpenMetrics when the Accept header asks for it. @default '/metrics' */
    metrics?: string
    /** @default '/healthz' */
    health?: string
    /** 503 with the reasons while not ready. @default '/readyz' */
    ready?: string
  }
}

/**
 * Express middleware serving an Observability's snapshot, metrics, health and readiness on GET
 * (and HEAD); other requests pass through.
 *
 * @throws {TypeError} with `code: 'ERR_BULWARK_INVALID_OPTION'` on a bad option.
 */
export declare function observability(
  options: ObservabilityMiddlewareOptions,
): (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => void
