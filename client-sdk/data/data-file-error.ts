// A bad data file, named as the user gave it, with the line and field at fault: the one error every data check throws.
export class DataFileError extends Error {
  override name = 'DataFileError';
  constructor(
    readonly file: string,
    readonly line: number | undefined,
    readonly field: string | undefined,
    detail: string,
  ) {
    super(`${file}${line !== undefined ? `:${line}` : ''}: ${field !== undefined ? `field '${field}': ` : ''}${detail}`);
  }
}
