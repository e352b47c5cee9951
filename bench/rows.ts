/** One line of the bench's table and of bench/results/latest.json (the shape bench/run.ts prints). */
export interface Row {
  group: string;
  what: string;
  seconds: number;
  perSecond?: number;
  ratio?: number;
  ratioOf?: string;
  peakRssMiB?: number;
  target?: string;
  met?: boolean;
}
