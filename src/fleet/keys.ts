// Where the fleet keeps what must agree across nodes, all under one prefix:
//   nodes/<name>/info    the node as it registered (no lease: a lost node stays listed)
//   nodes/<name>/alive   its heartbeat, on its lease: gone when the node is lost
//   drain/<name>         present while the node is drained
//   jobs/<id>            the fleet's record of a job (a protobuf Job); ids are
//                        UUIDv7, so key order is creation order
//   claims/<id>/start    who started the job, or that its start was cancelled
//   claims/<id>/end      who recorded its end (its node, or the node that declared it lost)
//   running/<node>/<id>  the node's unfinished jobs: what a loss must end
//   waiting/<keeper>/<id>  a job waiting for others (a protobuf WaitingJob):
//                        the node that judges its dependencies and places it;
//                        its start claim takes the key away, and a keeper
//                        lost is replaced by whichever node moves it first
//   names/<name>         the id of the newest job of that name; a start
//                        takes it over only while that job has ended
//   quota/<cn>/version   touched by every start of the CN's jobs (a start
//                        counts the use it read only if nobody started one since)
//   quota/<cn>/running/<id>  a job of the CN that has not ended: its share
//                        (one declared lost: on a lease, until its node
//                        would have stopped it)
//   quota/<cn>/created/<id>  a job created under a rate= rule (the UUIDv7 id
//                        says when); on a lease that outlives the longest
//                        window. CNs are URI-encoded.
//   schedules/<id>       a schedule, its last firings and its newest job
//                        (JSON; schedule-store.ts): every change one swap
//   schedule-names/<name>  the id of the schedule of that name
//   schedule-count       touched by every schedule's creation (the count cap)
// A claim is created once (create revision 0) in a transaction that also
// writes the record, and never rewritten (but put, unchanged, on the lease
// its record goes with): whoever created it decided. A job's claims go only
// with its record: when its node prunes it, or, for a job that never ran
// (no node's history has it), when the lease of --retain-for ends; an end
// claim needs the start claim, so nothing of a pruned job comes back.
// A node's etcd user may write only its own nodes/<name>/; every node writes
// the shared prefixes (any of them may declare another lost).
export class FleetKeys {
  constructor(readonly prefix: string) {}

  readonly nodes = (): string => `${this.prefix}nodes/`;
  readonly nodeInfo = (name: string): string => `${this.prefix}nodes/${name}/info`;
  readonly nodeAlive = (name: string): string => `${this.prefix}nodes/${name}/alive`;
  readonly nodePrefix = (name: string): string => `${this.prefix}nodes/${name}/`;
  readonly drains = (): string => `${this.prefix}drain/`;
  readonly drain = (name: string): string => `${this.prefix}drain/${name}`;
  readonly jobs = (): string => `${this.prefix}jobs/`;
  readonly job = (id: string): string => `${this.prefix}jobs/${id}`;
  readonly startClaim = (id: string): string => `${this.prefix}claims/${id}/start`;
  readonly endClaim = (id: string): string => `${this.prefix}claims/${id}/end`;
  readonly claims = (id: string): string => `${this.prefix}claims/${id}/`;
  readonly runningOn = (node: string): string => `${this.prefix}running/${node}/`;
  readonly running = (node: string, id: string): string => `${this.prefix}running/${node}/${id}`;
  readonly waitingAll = (): string => `${this.prefix}waiting/`;
  readonly waitingOn = (keeper: string): string => `${this.prefix}waiting/${keeper}/`;
  readonly waiting = (keeper: string, id: string): string => `${this.prefix}waiting/${keeper}/${id}`;
  readonly name = (name: string): string => `${this.prefix}names/${name}`;
  readonly schedules = (): string => `${this.prefix}schedules/`;
  readonly schedule = (id: string): string => `${this.prefix}schedules/${id}`;
  readonly scheduleName = (name: string): string => `${this.prefix}schedule-names/${name}`;
  readonly scheduleCount = (): string => `${this.prefix}schedule-count`;
  readonly quota = (cn: string): string => `${this.prefix}quota/${encodeURIComponent(cn)}/`;
  readonly quotaVersion = (cn: string): string => `${this.quota(cn)}version`;
  readonly quotaRunningOf = (cn: string): string => `${this.quota(cn)}running/`;
  readonly quotaRunning = (cn: string, id: string): string => `${this.quotaRunningOf(cn)}${id}`;
  readonly quotaCreatedOf = (cn: string): string => `${this.quota(cn)}created/`;
  readonly quotaCreated = (cn: string, id: string): string => `${this.quotaCreatedOf(cn)}${id}`;

  /** The last path element of a key (a node's name under drain/, a job's id under running/). */
  static last(key: string): string {
    return key.slice(key.lastIndexOf('/') + 1);
  }
}
