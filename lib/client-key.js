'use strict'
// The default rate-limit key of a client address.
//
// One IPv6 subscriber usually holds a whole /56 (or /48) and can pick a new address in it for
// every request, so keying IPv6 clients by full address would give each of them billions of
// buckets. Addresses are therefore grouped by their /56 prefix; IPv4 addresses (and IPv4-mapped
// IPv6 ones, as dual-stack sockets report them) are kept whole.
//
// This runs on every request, so the IPv4 case returns its input untouched and the IPv6 parser
// walks the string once with charCodeAt into a reused Uint16Array: no regex, no split, no
// allocation but the returned key.

/** Bits of an IPv6 address that identify one client. */
const IPV6_PREFIX_BITS = 56

// Scratch space of the parser; the module is synchronous, so one buffer serves every call.
const groups = new Uint16Array(8)

/**
 * Parses `text[0, end)` as dotted-quad IPv4 (no leading zeros, as `net.isIPv4` wants) starting
 * at `start`. Returns the address as an unsigned 32-bit number, or -1.
 */
function parseIPv4(text, start, end) {
  let value = 0
  let octets = 0
  let i = start
  while (octets < 4) {
    const first = i
    let octet = 0
    while (i < end) {
      const c = text.charCodeAt(i)
      if (c < 48 || c > 57) break
      octet = octet * 10 + (c - 48)
      i++
    }
    const digits = i - first
    if (digits === 0 || digits > 3 || octet > 255 || (digits > 1 && text.charCodeAt(first) === 48)) return -1
    value = value * 256 + octet
    octets++
    if (octets < 4) {
      if (i >= end || text.charCodeAt(i) !== 46) return -1
      i++
    }
  }
  return i === end ? value : -1
}

// Hex digit values by character code, -1 for the rest: one load instead of three range tests.
const HEX = new Int8Array(128).fill(-1)
for (let d = 0; d < 10; d++) HEX[48 + d] = d
for (let d = 0; d < 6; d++) HEX[97 + d] = HEX[65 + d] = 10 + d

/**
 * Parses `text[0, end)` as an IPv6 address (RFC 4291 section 2.2 text forms: full, `::`
 * compressed, with a trailing dotted quad) into `groups`. Returns false when it is not one.
 */
function parseInto(text, end) {
  let n = 0 // groups written
  let gap = -1 // index of the group where `::` stands
  let i = 0
  if (end < 2) return false
  if (text.charCodeAt(0) === 58) {
    if (text.charCodeAt(1) !== 58) return false
    gap = 0
    i = 2
  }
  while (i < end) {
    if (n === 8) return false
    const start = i
    let value = 0
    let c = text.charCodeAt(i)
    let digit
    while (c < 128 && (digit = HEX[c]) >= 0) {
      value = (value << 4) | digit
      if (++i === end) break
      c = text.charCodeAt(i)
    }
    const digits = i - start
    if (c === 46 && i < end) {
      // an IPv4 address in the last 32 bits (::ffff:1.2.3.4, 64:ff9b::1.2.3.4)
      if (n > 6) return false
      const v4 = parseIPv4(text, start, end)
      if (v4 < 0) return false
      groups[n++] = v4 >>> 16
      groups[n++] = v4 & 0xffff
      break
    }
    if (digits === 0 || digits > 4) return false
    groups[n++] = value
    if (i === end) break
    if (c !== 58) return false
    if (++i === end) return false // a single trailing ':'
    if (text.charCodeAt(i) === 58) {
      if (gap !== -1) return false
      gap = n
      i++
    }
  }
  if (gap === -1) return n === 8
  if (n === 8) return false // `::` stands for at least one group
  // move the groups after `::` to the end and zero the gap
  const tail = n - gap
  for (let k = 1; k <= tail; k++) groups[8 - k] = groups[n - k]
  for (let k = gap; k < 8 - tail; k++) groups[k] = 0
  return true
}

/** The length of `address` without an RFC 4007 zone id (`fe80::1%eth0`), or -1 if malformed. */
function withoutZone(address) {
  const percent = address.indexOf('%')
  if (percent === -1) return address.length
  return percent === 0 || percent === address.length - 1 ? -1 : percent
}

/**
 * The eight 16-bit groups of an IPv6 address (zone id ignored), or null when `address` is not a
 * valid IPv6 address.
 *
 * @param {string} address
 * @returns {number[] | null}
 */
function expandIPv6(address) {
  if (typeof address !== 'string') return null
  const end = withoutZone(address)
  if (end === -1 || !parseInto(address, end)) return null
  return Array.from(groups)
}

/**
 * The rate-limit key of a client address: an IPv4 address as given; an IPv4-mapped IPv6
 * address (`::ffff:1.2.3.4`) as its IPv4 address; any other IPv6 address as its /56 prefix in
 * RFC 5952 form (`2001:db8:85a3:ab12::1` -> `2001:db8:85a3:ab00::/56`), zone id dropped. Text
 * that is not an IP address is returned as it is.
 *
 * @param {string} address
 * @returns {string}
 */
function clientKey(address) {
  // IPv4 (and anything else without a colon) is its own key; the common case costs one scan.
  if (address.indexOf(':') === -1) return address
  const end = withoutZone(address)
  if (end === -1 || !parseInto(address, end)) return address
  const g0 = groups[0]
  const g1 = groups[1]
  const g2 = groups[2]
  // /56 keeps groups 0-2 and the high byte of group 3
  const g3 = groups[3] & 0xff00
  if (g0 === 0 && g1 === 0 && g2 === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff) {
    const hi = groups[6]
    const lo = groups[7]
    return `${hi >>> 8}.${hi & 0xff}.${lo >>> 8}.${lo & 0xff}`
  }
  // Groups 4-7 are zero after masking, so the longest run of zeros is the trailing one and
  // RFC 5952 compresses it: write the groups up to the last non-zero one, then `::`.
  if (g3 !== 0) return `${g0.toString(16)}:${g1.toString(16)}:${g2.toString(16)}:${g3.toString(16)}::/56`
  if (g2 !== 0) return `${g0.toString(16)}:${g1.toString(16)}:${g2.toString(16)}::/56`
  if (g1 !== 0) return `${g0.toString(16)}:${g1.toString(16)}::/56`
  if (g0 !== 0) return `${g0.toString(16)}::/56`
  return '::/56'
}

module.exports = { clientKey, expandIPv6, IPV6_PREFIX_BITS }
