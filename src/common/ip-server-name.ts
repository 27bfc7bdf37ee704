// What jobctl and the benchmarks do before they connect to a server by IP.
/**
 * grpc-js passes the host of the server address to TLS as the ServerName,
 * and Node warns (DEP0123, RFC 6066) when that is an IP address, which is
 * how jobctl is usually pointed at a server. The server's certificate is
 * still checked against the IP (its IP SANs), so the warning tells the user
 * nothing they can act on. Only that warning is dropped; any other still shows.
 */
export function silenceIpServerNameWarning(): void {
  const emitWarning = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((...args: unknown[]) => {
    const [, typeOrOptions, code] = args;
    const warningCode = typeof typeOrOptions === 'object' && typeOrOptions !== null ? (typeOrOptions as { code?: unknown }).code : code;
    if (warningCode === 'DEP0123') return;
    emitWarning(...args);
  }) as typeof process.emitWarning;
}
