// The subset of jstat (no bundled types) this app uses.
declare module 'jstat' {
  interface ChiSquare {
    /** Cumulative distribution function of the chi-square distribution with `dof` degrees of freedom. */
    cdf(x: number, dof: number): number;
  }
  const jstat: { jStat: { chisquare: ChiSquare } };
  export default jstat;
}
