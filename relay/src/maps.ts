// Map-of-lists helpers, shared by the relay, the CLI and the local server.

/** Appends value to the list at key, creating the list. */
export function push<K, V>(map: Map<K, V[]>, key: K, value: V) {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

/** The items grouped by key, in their order. */
export function groupBy<K, T>(items: Iterable<T>, key: (t: T) => K): Map<K, T[]> {
  const groups = new Map<K, T[]>();
  for (const x of items) push(groups, key(x), x);
  return groups;
}

/** The value at key, created by make() and stored when missing. */
export function getOrAdd<K, V>(map: Map<K, V>, key: K, make: () => V): V {
  let v = map.get(key);
  if (v === undefined) {
    v = make();
    map.set(key, v);
  }
  return v;
}
