// Original file: proto/fedtune.proto


export interface MetricsAck {
}

export interface MetricsAck__Output {
}
