// Work over a list with a bound on how much is in flight: usage reads on the
// supervisor threads, calls to other nodes, etcd transactions.

/** Runs `work` for every item, at most `limit` at once; resolves when all are done, rejects with the first failure. */
export async function atMost<T>(limit: number, items: readonly T[], work: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const at = next++;
      await work(items[at]!, at);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
