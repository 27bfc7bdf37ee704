#!/usr/bin/env node
import '../dist/jobctl.mjs';
