/// DEVICE_STATE (SET_DEVICE_STATE_FD, CHECK_DEVICE_STATE): the device's state moves as the framed
/// bytes of `DeviceState.encoded()`; a device without state sends an empty stream and accepts one.
extension Session {
    /// Starts saving the device's state into `pipe`, or loading one from it; the reply says the
    /// back-end uses the front-end's pipe (no descriptor of its own).
    func startStateTransfer(_ parameters: DeviceStateTransferParameters, pipe: OwnedDescriptor) throws(VhostUserError) -> Reply {
        let request = FrontendRequest.setDeviceStateFd
        guard protocolFeatures.contains(.deviceState) else { throw .invalidRequest(request, "DEVICE_STATE was not negotiated") }
        guard parameters.phase == DeviceStateTransfer.stoppedPhase else {
            throw .invalidRequest(request, "migration phase \(parameters.phase): only the stopped phase (0) is supported")
        }
        guard let direction = DeviceStateTransfer.Direction(rawValue: parameters.direction) else {
            throw .invalidRequest(request, "transfer direction \(parameters.direction)")
        }
        if let stale = stateTransfer {
            stateTransfer = nil
            logger.warning("device state: a \(stale.direction) transfer was never checked; dropping it")
            stale.cancel()
            _ = stale.finish()
        }
        // The device's state is only read or replaced while no worker holds it.
        stopAllQueues()
        switch direction {
        case .save:
            let bytes: [UInt8]
            do { bytes = try device.saveState()?.encoded() ?? [] } catch {
                throw .deviceRefused(request: request.rawValue, "saving the device state failed: \(error)")
            }
            logger.info("device state: saving \(bytes.count) bytes")
            stateTransfer = try VhostUserError.fromSystem { () throws(SystemError) in try DeviceStateTransfer(saving: bytes, to: pipe) }
        case .load:
            stateTransfer = try VhostUserError.fromSystem { () throws(SystemError) in try DeviceStateTransfer(loadingFrom: pipe) }
        }
        return Reply(U64Payload(DeviceStateTransfer.noDescriptorFlag))
    }

    /// Ends the transfer: waits for the bytes to have moved and, for a load, checks and applies the
    /// state (all of it or nothing). Returns whether everything succeeded.
    func finishStateTransfer() -> Bool {
        guard let transfer = stateTransfer else {
            logger.error("CHECK_DEVICE_STATE without a transfer (SET_DEVICE_STATE_FD)")
            return false
        }
        stateTransfer = nil
        let bytes: [UInt8]
        switch transfer.finish() {
        case let .failure(error):
            logger.error("device state \(transfer.direction) failed: \(error)")
            return false
        case let .success(moved):
            bytes = moved
        }
        guard transfer.direction == .load else { return true }
        guard !bytes.isEmpty else {
            logger.info("device state: the source sent no state; nothing to load")
            return true
        }
        do {
            let state = try DeviceState(decoding: bytes)
            stopAllQueues()
            try device.loadState(state)
            logger.info("device state: loaded \(bytes.count) bytes (\(state.kind) version \(state.version))")
            return true
        } catch {
            logger.error("device state refused, nothing applied: \(error)")
            return false
        }
    }
}
